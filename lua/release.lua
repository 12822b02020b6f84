-- release.lua: release a lease; idempotent, and a no-op for a lease already released or
-- reclaimed (so it never touches the proxy's newer leases).
-- KEYS[1..12] the pool block (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] retention of released lease records in microseconds (integer >= 0)
-- Returns {code, total, active, available, leased, leases, lease JSON}: the pool counters
--   after the call, then the lease record; code 'released', or 'noop' when it was already
--   over | {'missing', counters...} | {'nopool'}
local lease_id, retention_us = ARGV[1], tonumber(ARGV[2])

if redis.call('EXISTS', K_META) == 0 then
  return {'nopool'}
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw then
  return append_counters({'missing'})
end
local code = 'noop'
if redis.call('ZREM', K_DEADLINES, lease_id) == 1 then
  local now = now_us()
  raw = end_lease(lease_id, raw, now, retention_us)
  purge_history(now)
  code = 'released'
end
local out = append_counters({code})
out[#out + 1] = raw
return out
