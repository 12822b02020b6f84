-- audit.lua: recompute everything derived in a pool from its proxies and lease records,
-- report each difference ("drift") and, with ARGV[1] = 'repair', fix it in the same atomic
-- step. Derived state: each proxy's lease count, the four availability sets, the pool
-- counters, the deadline zset and the history zset. Work is proportional to the pool's size
-- and lease records: an administrative call, not a hot-path one.
-- KEYS[1..12] the pool block (see _pool.lua)
-- ARGV[1] 'check' | 'repair'
-- ARGV[2] retention of released lease records in microseconds (integer >= 0), used when
--   a released record is missing from the history zset
-- ARGV[3] the pool's name in the global registry (save_pool writes it there first)
-- Returns {'nopool'} | {'ok', proxies, active leases, earliest deadline ('' for none), then
--   four strings per drift: what, subject, found, expected}; found/expected '' mean absent
local repair, retention_us, registered = ARGV[1] == 'repair', tonumber(ARGV[2]), ARGV[3]

if redis.call('EXISTS', K_META) == 0 then
  return {'nopool'}
end
local now = now_us()
local drift = {}
local function report(what, subject, found, expected)
  drift[#drift + 1] = what
  drift[#drift + 1] = subject
  drift[#drift + 1] = found == nil and '' or tostring(found)
  drift[#drift + 1] = expected == nil and '' or tostring(expected)
end

-- A hash or zset as a Lua table (zset: member -> score string).
local function as_table(flat)
  local t = {}
  for i = 1, #flat, 2 do
    t[flat[i]] = flat[i + 1]
  end
  return t
end

local name = redis.call('HGET', K_META, 'name')
if name ~= registered then
  report('registry', 'name', name or nil, registered)
  if repair then
    redis.call('HSET', K_META, 'name', registered)
  end
end

local states = as_table(redis.call('HGETALL', K_STATE))
local deadlines = as_table(redis.call('ZRANGE', K_DEADLINES, 0, -1, 'WITHSCORES'))
local history = as_table(redis.call('ZRANGE', K_HISTORY, 0, -1, 'WITHSCORES'))

-- Lease records: active ones set the expected counts and deadlines.
local expected_n, active, earliest = {}, 0, nil
local leases = redis.call('HGETALL', K_LEASES)
for i = 1, #leases, 2 do
  local lease_id, rec = leases[i], cjson.decode(leases[i + 1])
  if rec.released == nil and states[rec.proxy] == nil then
    report('lease-without-proxy', lease_id, rec.proxy, '')
    if repair then
      redis.call('ZREM', K_DEADLINES, lease_id)
      end_lease(lease_id, leases[i + 1], now, retention_us)
    end
    deadlines[lease_id] = nil
  elseif rec.released == nil then
    active = active + 1
    expected_n[rec.proxy] = (expected_n[rec.proxy] or 0) + 1
    local due = tonumber(rec.expires)
    if earliest == nil or due < earliest then
      earliest = due
    end
    if tonumber(deadlines[lease_id]) ~= due then
      report('deadline', lease_id, deadlines[lease_id], rec.expires)
      if repair then
        redis.call('ZADD', K_DEADLINES, rec.expires, lease_id)
      end
    end
    deadlines[lease_id] = nil
  else
    if deadlines[lease_id] then
      report('deadline', lease_id, deadlines[lease_id], '')
      if repair then
        redis.call('ZREM', K_DEADLINES, lease_id)
      end
      deadlines[lease_id] = nil
    end
    if history[lease_id] == nil then
      report('history', lease_id, '', 'purge time')
      if repair then
        redis.call('ZADD', K_HISTORY, int_str(tonumber(rec.released) + retention_us), lease_id)
      end
    end
    history[lease_id] = nil
  end
end
for lease_id, score in pairs(deadlines) do
  report('deadline', lease_id, score, '')
  if repair then
    redis.call('ZREM', K_DEADLINES, lease_id)
  end
end
for lease_id, score in pairs(history) do
  if redis.call('HEXISTS', K_LEASES, lease_id) == 0 then
    report('history', lease_id, score, '')
    if repair then
      redis.call('ZREM', K_HISTORY, lease_id)
    end
  end
end

-- Lease counts.
local counts = as_table(redis.call('HGETALL', K_COUNTS))
for id, n in pairs(counts) do
  if states[id] == nil then
    report('count', id, n, '')
    if repair then
      redis.call('HDEL', K_COUNTS, id)
    end
  end
end
for id, _ in pairs(states) do
  local n, stored = expected_n[id] or 0, tonumber(counts[id]) or 0
  if stored ~= n or counts[id] == '0' then
    report('count', id, counts[id], n > 0 and n or nil)
    if repair then
      if n > 0 then
        redis.call('HSET', K_COUNTS, id, n)
      else
        redis.call('HDEL', K_COUNTS, id)
      end
    end
  end
end

-- Records: every proxy has one, and only proxies do.
local records = redis.call('HKEYS', K_RECORDS)
for _, id in ipairs(records) do
  if states[id] == nil then
    report('record-without-proxy', id, 'record', '')
    if repair then
      redis.call('HDEL', K_RECORDS, id)
    end
  end
end
for id, _ in pairs(states) do
  if redis.call('HEXISTS', K_RECORDS, id) == 0 then
    -- Host and port are gone: nothing to rebuild the proxy from, so repair removes it.
    report('proxy-without-record', id, 'state', '')
    if repair then
      redis.call('HDEL', K_STATE, id)
      redis.call('HDEL', K_COUNTS, id)
    end
  end
end

-- Availability sets and counters, from the repaired proxies.
local expected_sets = {[K_FIRST] = {}, [K_LEAST] = {}, [K_RR] = {}, [K_LATENCY] = {}}
local totals = {0, 0, 0, 0, 0}
for id, raw in pairs(states) do
  if not repair or redis.call('HEXISTS', K_STATE, id) == 1 then
    local p = {st = cjson.decode(raw), n = expected_n[id] or 0}
    local c = contribution(p)
    for i = 1, 5 do
      totals[i] = totals[i] + c[i]
    end
    if available(p) then
      expected_sets[K_FIRST][id] = p.st.f
      expected_sets[K_LEAST][p.st.c .. id] = p.n
      expected_sets[K_RR][id] = 0
      expected_sets[K_LATENCY][id] = p.st.l or 'inf'
    end
  end
end
local set_names = {[K_FIRST] = 'first', [K_LEAST] = 'least', [K_RR] = 'rr', [K_LATENCY] = 'latency'}
local function same_score(stored, want)
  if stored == nil then
    return false
  end
  if want == 'inf' then
    return stored == 'inf'
  end
  return tonumber(stored) == tonumber(want)
end
for key, want in pairs(expected_sets) do
  local stored = as_table(redis.call('ZRANGE', key, 0, -1, 'WITHSCORES'))
  for member, score in pairs(stored) do
    if want[member] == nil then
      report('available:' .. set_names[key], member, score, '')
      if repair then
        redis.call('ZREM', key, member)
      end
    end
  end
  for member, score in pairs(want) do
    if not same_score(stored[member], score) then
      report('available:' .. set_names[key], member, stored[member], score)
      if repair then
        redis.call('ZADD', key, score, member)
      end
    end
  end
end
local stored_totals = redis.call('HMGET', K_META, unpack(COUNTERS))
for i = 1, 5 do
  if (tonumber(stored_totals[i]) or 0) ~= totals[i] then
    report('counter', COUNTERS[i], stored_totals[i], totals[i])
    if repair then
      redis.call('HSET', K_META, COUNTERS[i], totals[i])
    end
  end
end

local proxies = 0
for _ in pairs(states) do
  proxies = proxies + 1
end
local out = {'ok', proxies, active, earliest and int_str(earliest) or ''}
for _, v in ipairs(drift) do
  out[#out + 1] = v
end
return out
