-- release.lua: release a lease; idempotent, and a no-op for a lease already released or
-- reclaimed (so it never touches the proxy's newer leases).
-- KEYS[1..12] the pool block (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] retention of released lease records in microseconds (integer >= 0)
-- Returns {'released', lease JSON} | {'noop', lease JSON} | {'missing'} | {'nopool'}
local lease_id, retention_us = ARGV[1], tonumber(ARGV[2])

if redis.call('EXISTS', K_META) == 0 then
  return {'nopool'}
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw then
  return {'missing'}
end
if redis.call('ZREM', K_DEADLINES, lease_id) == 0 then
  return {'noop', raw}
end
local now = now_us()
local rec = end_lease(lease_id, raw, now, retention_us)
purge_history(now)
return {'released', rec}
