-- audit.lua: one bounded step of a pool audit. Recomputes part of what the scripts derive
-- from the proxies and lease records, reports each difference ("drift") and, with
-- ARGV[2] = 'repair', fixes it in the same atomic step. Every check compares values read in
-- the same call, so leasing going on meanwhile never shows up as drift.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] step; pharox_redis/operations/audit.py runs them in this order, so a repair fixes what
--   later steps rely on first (a count is never lowered because a deadline was missing):
--   'leases'   one HSCAN page of :leases: each record is on the time line (:deadlines).
--   'timeline' one rank range of :deadlines: each entry has a lease record, an active lease
--              is scored at its expiry and a released one at a purge time (x.5).
--   'counts'   the registered name; each active lease on the time line belongs to an
--              existing proxy; each proxy's lease count equals its active leases. Work:
--              O(time line entries + leased proxies).
--   'address-index' one HSCAN page of :addresses (once the index is complete, see
--              _address.lua): each entry names a proxy with a record of that address.
--   'proxies'  one HSCAN page of :state: a connection record exists, and the proxy is in
--              each kept availability set with the right score exactly when it is available.
--   'records'  one HSCAN page of :records: each belongs to a proxy.
--   'sets'     one rank range of each kept availability set: every member is an available
--              proxy with that member name; an availability set that is not kept is removed;
--              on the first page, with 'repair', sets unused for ARGV[7] seconds are dropped
--              (reported as 'idle-set', which is no drift).
--   'counters' the 'active' counter (the other counters are derived, see _pool.lua).
--   'addresses' one HSCAN page of :records: each proxy's address has an entry, naming it
--              (or another proxy of the same address, saved before the index existed).
-- ARGV[2] 'check' | 'repair'
-- ARGV[3] the pool's name in the global registry
-- ARGV[4] retention of released lease records in microseconds (integer >= 0)
-- ARGV[5] cursor (HSCAN cursor, or rank to start at) ('0' to start)
-- ARGV[6] page size (integer >= 1)
-- ARGV[7] seconds after which an unused availability set is dropped (integer >= 0)
-- ARGV[8] for 'counters': active proxies the 'proxies' pages counted (used when no set is
--   ready to count them atomically)
-- Returns (see _pool.lua) 'nopool' | {'ok', name, false, next cursor ('0' when done), a, b,
--   c, drift...}: for 'counts' a = the pool's 'sched' field ('' for none), b = active leases
--   and c = earliest deadline ('' for none), for 'counters' a = proxies, for 'proxies' a =
--   items examined and b = active proxies among them, otherwise a = items examined; then
--   four strings per drift: what, subject, found, expected ('' for absent)
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

local function same_score(stored, want)
  if stored == nil or stored == false then
    return false
  end
  if want == 'inf' then
    return stored == 'inf'
  end
  return tonumber(stored) == tonumber(want)
end

local function is_purge(score)
  return tonumber(score) % 1 ~= 0
end

if step == 'counts' then
  if name ~= registered then
    report('registry', 'name', name, registered)
    if repair then
      redis.call('HSET', K_META, 'name', registered)
    end
  end
  local expected_n, earliest, active = {}, nil, 0
  local line = redis.call('ZRANGE', K_DEADLINES, 0, -1, 'WITHSCORES')
  for i = 1, #line, 2 do
    local lease_id = line[i]
    if not is_purge(line[i + 1]) then
      local raw = redis.call('HGET', K_LEASES, lease_id)
      if raw and not string.find(raw, '"released"', 1, true) then
        local rec = cjson.decode(raw)
        if redis.call('HEXISTS', K_STATE, rec.proxy) == 0 then
          report('lease-without-proxy', lease_id, rec.proxy, '')
          if repair then
            end_lease(lease_id, raw, now_us(), retention_us)
          end
        else
          active = active + 1
          expected_n[rec.proxy] = (expected_n[rec.proxy] or 0) + 1
          local due = tonumber(rec.expires)
          if earliest == nil or due < earliest then
            earliest = due
          end
        end
      end
    end
  end
  -- Lease counts: exactly the proxies with active leases have one.
  local counts = as_table(redis.call('HGETALL', K_COUNTS))
  for id, n in pairs(counts) do
    if expected_n[id] == nil then
      report('count', id, n, '')
      if repair then
        redis.call('HDEL', K_COUNTS, id)  -- the later steps fix the sets
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
  out[5] = SCHED and int_str(SCHED) or ''
  out[6], out[7] = active, earliest and int_str(earliest) or ''
  return out
end

if step == 'counters' then
  -- 'active' = available proxies (the size of the ready sets; the median when several are
  -- ready, so one damaged set does not count) + the active proxies that are full.
  local sizes = {}
  for _, set in ipairs(SET_NAMES) do
    if SETS[set] == 'r' then
      sizes[#sizes + 1] = redis.call('ZCARD', SET_KEYS[set])
    end
  end
  local want
  if #sizes > 0 then
    table.sort(sizes)
    want = sizes[math.ceil(#sizes / 2)]
    local flat = redis.call('HGETALL', K_COUNTS)
    for i = 1, #flat, 2 do
      local p = load_proxy(flat[i])
      if p and p.st.s == 'active' and not available(p) then
        want = want + 1
      end
    end
  else
    want = tonumber(ARGV[8]) or 0
  end
  local stored = redis.call('HGET', K_META, 'active')
  if (tonumber(stored) or 0) ~= want then
    report('counter', 'active', stored or nil, want)
    if repair then
      redis.call('HSET', K_META, 'active', want)
    end
  end
  out[5] = redis.call('HLEN', K_STATE)
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
      if p.st.s == 'active' then
        out[6] = out[6] + 1
      end
      local fits = available(p)
      for _, set in ipairs(SET_NAMES) do
        if SETS[set] then
          local key = SET_KEYS[set]
          local member, want = placement(set, id, p.st, p.n)
          local score = redis.call('ZSCORE', key, member)
          if fits and not same_score(score, want) then
            report('available:' .. set, member, score or nil, want)
            if repair then
              redis.call('ZADD', key, want, member)
            end
          elseif not fits and score then
            report('available:' .. set, member, score, '')
            if repair then
              redis.call('ZREM', key, member)
            end
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
  if start == 0 then
    local idle_s = tonumber(ARGV[7])
    local seconds = math.floor(now_us() / 1000000)
    for _, set in ipairs(SET_NAMES) do
      if SETS[set] and repair and (USED[set] == nil or seconds - USED[set] >= idle_s) then
        report('idle-set', set, USED[set] or '', '')
        redis.call('DEL', SET_KEYS[set])
        redis.call('HDEL', K_META, 'set:' .. set, 'used:' .. set)
        SETS[set] = nil
      elseif not SETS[set] and redis.call('EXISTS', SET_KEYS[set]) == 1 then
        report('available:' .. set, '(set)', 'not kept', '')
        if repair then
          redis.call('DEL', SET_KEYS[set])
        end
      end
    end
  end
  local longest = 0
  for _, set in ipairs(SET_NAMES) do
    if SETS[set] then
      local key = SET_KEYS[set]
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
    if redis.call('ZSCORE', K_DEADLINES, lease_id) == false then
      if rec.released == nil then
        report('deadline', lease_id, '', rec.expires)
        if repair then
          redis.call('ZADD', K_DEADLINES, rec.expires, lease_id)
        end
      else
        report('history', lease_id, '', 'purge time')
        if repair then
          redis.call('ZADD', K_DEADLINES, purge_score(tonumber(rec.released), retention_us), lease_id)
        end
      end
    end
  end
  return out
end

if step == 'timeline' then
  local start = tonumber(cursor)
  local members = redis.call('ZRANGE', K_DEADLINES, start, start + page - 1, 'WITHSCORES')
  local kept = 0
  for i = 1, #members, 2 do
    local lease_id, score = members[i], members[i + 1]
    out[5] = out[5] + 1
    local raw = redis.call('HGET', K_LEASES, lease_id)
    local rec = raw and cjson.decode(raw) or nil
    local want, what = nil, is_purge(score) and 'history' or 'deadline'
    if rec and rec.released == nil then
      want = rec.expires
    elseif rec and not is_purge(score) then
      want = purge_score(tonumber(rec.released), retention_us)
    end
    if not rec then
      report(what, lease_id, score, '')
      if repair then
        redis.call('ZREM', K_DEADLINES, lease_id)
      end
    elseif want and tonumber(score) ~= tonumber(want) then
      report('deadline', lease_id, score, rec.released == nil and want or 'purge time')
      if repair then
        redis.call('ZADD', K_DEADLINES, want, lease_id)  -- it moves: not counted as kept
      else
        kept = kept + 1
      end
    else
      kept = kept + 1
    end
  end
  local next_rank = start + (repair and kept or #members / 2)
  out[4] = #members / 2 == page and tostring(next_rank) or '0'
  return out
end

if step == 'address-index' or step == 'addresses' then
  if redis.call('HGET', K_META, 'addr') ~= 'r' then
    return out  -- not built yet: the next save builds it
  end
  local index = step == 'address-index'
  local scan = redis.call('HSCAN', index and K_ADDRESSES or K_RECORDS, cursor, 'COUNT', page)
  out[4] = scan[1]
  local fields = scan[2]
  for i = 1, #fields, 2 do
    out[5] = out[5] + 1
    if index then
      local address, id = fields[i], fields[i + 1]
      local holds = address_of(id)
      local stored = redis.call('HEXISTS', K_STATE, id) == 1
      if holds == nil and stored then
        -- A proxy without a record: the 'proxies' step reports it, and its repair removes
        -- the proxy, so its entry goes with it.
        if repair then
          redis.call('HDEL', K_ADDRESSES, address)
        end
      elseif holds ~= address or not stored then
        report('address', address, id, '')
        if repair then
          redis.call('HDEL', K_ADDRESSES, address)
        end
      end
    elseif redis.call('HEXISTS', K_STATE, fields[i]) == 1 then  -- else 'records' reports it
      local id, address = fields[i], record_address(fields[i + 1])
      local owner = redis.call('HGET', K_ADDRESSES, address)
      if owner ~= id and not (owner and address_of(owner) == address) then
        report('address', address, owner or '', id)
        if repair then
          redis.call('HSET', K_ADDRESSES, address, id)
        end
      end
    end
  end
  return out
end

return redis.error_reply('audit.lua: unknown step ' .. tostring(step))
