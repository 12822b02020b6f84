-- audit.lua: one bounded step of a pool audit. Recomputes part of what the scripts derive
-- from the proxies and lease records, reports each difference ("drift") and, with
-- ARGV[2] = 'repair', fixes it in the same atomic step. Every check compares values read in
-- the same call, so leasing going on meanwhile never shows up as drift.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] step; pharox_redis/operations/audit.py runs them in this order, so a repair fixes what
--   later steps rely on first (a count is never lowered because a deadline was missing):
--   'leases'   one HSCAN page of :leases: an active lease is in the deadline zset, a
--              released one in the history zset.
--   'history'  one rank range of :history: the lease record still exists.
--   'counts'   the registered name; each deadline belongs to an active lease of an existing
--              proxy, at its expiry; each proxy's lease count equals its active leases (the
--              deadline zset is their index). Work: O(active leases + leased proxies).
--   'proxies'  one HSCAN page of :state: a connection record exists, and the proxy is in
--              each availability set with the right score exactly when it is available.
--   'records'  one HSCAN page of :records: each belongs to a proxy.
--   'sets'     one rank range of each availability set: every member is an available
--              proxy with that member name (no stale members).
--   'counters' the five pool counters. Work: O(active leases).
-- ARGV[2] 'check' | 'repair'
-- ARGV[3] the pool's name in the global registry
-- ARGV[4] retention of released lease records in microseconds (integer >= 0)
-- ARGV[5] cursor (HSCAN cursor, or rank to start at) ('0' to start)
-- ARGV[6] page size (integer >= 1)
-- Returns (see _pool.lua) 'nopool' | {'ok', name, false, next cursor ('0' when done), a, b,
--   c, drift...}: for
--   'counts' a = the pool's 'sched' field ('' for none), b = active leases and c = earliest
--   deadline ('' for none), for 'counters'
--   a = proxies, otherwise a = items examined; then four strings per drift: what, subject,
--   found, expected ('' for absent)
local step, repair, registered = ARGV[1], ARGV[2] == 'repair', ARGV[3]
local retention_us, cursor, page = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])

local name, refused = pool_named('')
if not name then
  return refused
end
-- out[4] is the next cursor and out[5..7] the step's figures (see Returns).
local out = answer('ok', name, false, {'0', 0, 0, ''})
local function report(what, subject, found, expected)
  out[#out + 1] = what
  out[#out + 1] = subject
  out[#out + 1] = found == nil and '' or tostring(found)
  out[#out + 1] = expected == nil and '' or tostring(expected)
end

local function as_table(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

local SETS = {first = K_FIRST, least = K_LEAST, rr = K_RR, latency = K_LATENCY}

-- Where an available proxy belongs: member and score in each set.
local function placements(id, p)
  return {
    first = {id, p.st.f}, least = {p.st.c .. id, p.n},
    rr = {id, 0}, latency = {id, p.st.l or 'inf'},
  }
end

local function same_score(stored, want)
  if stored == nil or stored == false then
    return false
  end
  if want == 'inf' then
    return stored == 'inf'
  end
  return tonumber(stored) == tonumber(want)
end

-- Active leases by proxy, through the deadline index: {proxy id -> n}, count, earliest.
local function active_leases(check)
  local expected_n, earliest, active = {}, nil, 0
  local deadlines = redis.call('ZRANGE', K_DEADLINES, 0, -1, 'WITHSCORES')
  for i = 1, #deadlines, 2 do
    local lease_id, score = deadlines[i], deadlines[i + 1]
    local raw = redis.call('HGET', K_LEASES, lease_id)
    local rec = raw and cjson.decode(raw) or nil
    if rec and rec.released == nil and redis.call('HEXISTS', K_STATE, rec.proxy) == 1 then
      active = active + 1
      expected_n[rec.proxy] = (expected_n[rec.proxy] or 0) + 1
      local due = tonumber(rec.expires)
      if earliest == nil or due < earliest then
        earliest = due
      end
    end
    if check then
      check(lease_id, score, raw, rec)
    end
  end
  return expected_n, active, earliest
end

if step == 'counts' then
  if name ~= registered then
    report('registry', 'name', name, registered)
    if repair then
      redis.call('HSET', K_META, 'name', registered)
    end
  end
  local function check(lease_id, score, raw, rec)
    if not rec or rec.released ~= nil then
      report('deadline', lease_id, score, '')
      if repair then
        redis.call('ZREM', K_DEADLINES, lease_id)
      end
    elseif redis.call('HEXISTS', K_STATE, rec.proxy) == 0 then
      report('lease-without-proxy', lease_id, rec.proxy, '')
      if repair then
        redis.call('ZREM', K_DEADLINES, lease_id)
        end_lease(lease_id, raw, now_us(), retention_us)
      end
    elseif tonumber(score) ~= tonumber(rec.expires) then
      report('deadline', lease_id, score, rec.expires)
      if repair then
        redis.call('ZADD', K_DEADLINES, rec.expires, lease_id)
      end
    end
  end
  local expected_n, active, earliest = active_leases(check)
  -- Lease counts: exactly the proxies with active leases have one.
  local counts = as_table(redis.call('HGETALL', K_COUNTS))
  for id, n in pairs(counts) do
    if expected_n[id] == nil then
      report('count', id, n, '')
      if repair then
        redis.call('HDEL', K_COUNTS, id)  -- the later steps fix the sets and counters
      end
    end
  end
  for id, n in pairs(expected_n) do
    if tonumber(counts[id]) ~= n then
      report('count', id, counts[id], n)
      if repair then
        redis.call('HSET', K_COUNTS, id, n)
      end
    end
  end
  out[5] = redis.call('HGET', K_META, 'sched') or ''
  out[6], out[7] = active, earliest and int_str(earliest) or ''
  return out
end

if step == 'counters' then
  local expected_n = active_leases(nil)
  -- Counters. 'available' is the size of the availability sets (the other steps check their
  -- members; the median of the four sizes is right when one set is damaged), and every full
  -- ACTIVE proxy has leases, so 'active' needs only the leased proxies.
  local sizes = {}
  for _, key in pairs(SETS) do
    sizes[#sizes + 1] = redis.call('ZCARD', key)
  end
  table.sort(sizes)
  local free = sizes[2]
  local full_active, leased, leases = 0, 0, 0
  for id, n in pairs(expected_n) do
    local p = load_proxy(id)
    leased, leases = leased + 1, leases + n
    if p.st.s == 'active' and not available(p) then
      full_active = full_active + 1
    end
  end
  local totals = {redis.call('HLEN', K_STATE), free + full_active, free, leased, leases}
  local stored = redis.call('HMGET', K_META, unpack(COUNTERS))
  for i = 1, 5 do
    if (tonumber(stored[i]) or 0) ~= totals[i] then
      report('counter', COUNTERS[i], stored[i] or nil, totals[i])
      if repair then
        redis.call('HSET', K_META, COUNTERS[i], totals[i])
      end
    end
  end
  out[5] = totals[1]
  return out
end

if step == 'proxies' then
  local scan = redis.call('HSCAN', K_STATE, cursor, 'COUNT', page)
  out[4] = scan[1]
  local fields = scan[2]
  for i = 1, #fields, 2 do
    local id = fields[i]
    out[5] = out[5] + 1
    if redis.call('HEXISTS', K_RECORDS, id) == 0 then
      -- Host and port are gone: nothing to rebuild the proxy from, so repair removes it.
      report('proxy-without-record', id, 'state', '')
      if repair then
        reindex(id, load_proxy(id), nil)
        redis.call('HDEL', K_STATE, id)
        redis.call('HDEL', K_COUNTS, id)
      end
    else
      local p = {st = cjson.decode(fields[i + 1]), n = tonumber(redis.call('HGET', K_COUNTS, id)) or 0}
      local want = available(p) and placements(id, p) or nil
      for set, key in pairs(SETS) do
        local member = want and want[set][1] or (set == 'least' and p.st.c .. id or id)
        local score = redis.call('ZSCORE', key, member)
        if want and not same_score(score, want[set][2]) then
          report('available:' .. set, member, score or nil, want[set][2])
          if repair then
            redis.call('ZADD', key, want[set][2], member)
          end
        elseif not want and score then
          report('available:' .. set, member, score, '')
          if repair then
            redis.call('ZREM', key, member)
          end
        end
      end
    end
  end
  return out
end

if step == 'records' then
  local scan = redis.call('HSCAN', K_RECORDS, cursor, 'COUNT', page)
  out[4] = scan[1]
  local fields = scan[2]
  for i = 1, #fields, 2 do
    out[5] = out[5] + 1
    if redis.call('HEXISTS', K_STATE, fields[i]) == 0 then
      report('record-without-proxy', fields[i], 'record', '')
      if repair then
        redis.call('HDEL', K_RECORDS, fields[i])
      end
    end
  end
  return out
end

if step == 'sets' then
  local start = tonumber(cursor)
  local longest = 0
  for set, key in pairs(SETS) do
    local members = redis.call('ZRANGE', key, start, start + page - 1)
    longest = math.max(longest, #members)
    for _, member in ipairs(members) do
      out[5] = out[5] + 1
      local id = set == 'least' and string.sub(member, -36) or member
      local p = load_proxy(id)
      local fits = p ~= nil and available(p)
      if fits and set == 'least' then
        fits = p.st.c .. id == member
      end
      if not fits then
        report('available:' .. set, member, 'member', '')
        if repair then
          redis.call('ZREM', key, member)
        end
      end
    end
  end
  out[4] = longest == page and tostring(start + page) or '0'
  return out
end

if step == 'leases' then
  local scan = redis.call('HSCAN', K_LEASES, cursor, 'COUNT', page)
  out[4] = scan[1]
  local fields = scan[2]
  for i = 1, #fields, 2 do
    local lease_id, rec = fields[i], cjson.decode(fields[i + 1])
    out[5] = out[5] + 1
    if rec.released == nil and redis.call('ZSCORE', K_DEADLINES, lease_id) == false then
      report('deadline', lease_id, '', rec.expires)
      if repair then
        redis.call('ZADD', K_DEADLINES, rec.expires, lease_id)
      end
    elseif rec.released ~= nil and redis.call('ZSCORE', K_HISTORY, lease_id) == false then
      report('history', lease_id, '', 'purge time')
      if repair then
        redis.call('ZADD', K_HISTORY, int_str(tonumber(rec.released) + retention_us), lease_id)
      end
    end
  end
  return out
end

if step == 'history' then
  local start = tonumber(cursor)
  local members = redis.call('ZRANGE', K_HISTORY, start, start + page - 1, 'WITHSCORES')
  local kept = 0
  for i = 1, #members, 2 do
    out[5] = out[5] + 1
    if redis.call('HEXISTS', K_LEASES, members[i]) == 0 then
      report('history', members[i], members[i + 1], '')
      if repair then
        redis.call('ZREM', K_HISTORY, members[i])
      end
    else
      kept = kept + 1
    end
  end
  local next_rank = start + (repair and kept or #members / 2)
  out[4] = #members / 2 == page and tostring(next_rank) or '0'
  return out
end

return redis.error_reply('audit.lua: unknown step ' .. tostring(step))
