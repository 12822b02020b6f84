-- lease.lua: lease one given proxy if it is still available (compare-and-lease).
-- KEYS[1..12] the pool block (see _pool.lua)
-- ARGV[1] pool name the caller expects, or '' to accept any (string)
-- ARGV[2] proxy id (UUID string)
-- ARGV[3] lease id (UUID string chosen by the client; a retry with the same id returns the
--         lease already made instead of a second one)
-- ARGV[4] consumer id (UUID string)
-- ARGV[5] lease duration in microseconds (integer > 0)
-- ARGV[6] retention of released lease records in microseconds (integer >= 0)
-- Returns {'ok', pool name, lease JSON} | {'exists', pool name, lease JSON} | {'nopool'}
--   | {'stale', pool name} | {'missing'} | {'unavailable'}
local expected_name, proxy_id, lease_id = ARGV[1], ARGV[2], ARGV[3]
local consumer_id, duration_us = ARGV[4], tonumber(ARGV[5])

local name = redis.call('HGET', K_META, 'name')
if not name then
  return {'nopool'}
end
if expected_name ~= '' and name ~= expected_name then
  return {'stale', name}
end
local existing = redis.call('HGET', K_LEASES, lease_id)
if existing then
  return {'exists', name, existing}
end
local p = load_proxy(proxy_id)
if not p then
  return {'missing'}
end
if not available(p) then
  return {'unavailable'}
end

local now = now_us()
local rec = cjson.encode({
  proxy = proxy_id, consumer = consumer_id,
  acquired = int_str(now), expires = int_str(now + duration_us),
})
redis.call('HSET', K_LEASES, lease_id, rec)
redis.call('ZADD', K_DEADLINES, int_str(now + duration_us), lease_id)
set_leases(proxy_id, p, p.n + 1)
purge_history(now)
return {'ok', name, rec}
