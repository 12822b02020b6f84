-- release.lua: release a lease; idempotent, and a no-op for a lease already released or
-- reclaimed (so it never touches the proxy's newer leases).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] retention of released lease records in microseconds (integer >= 0)
-- Returns (see _pool.lua) {code, name, counters, lease JSON}: code 'released', or 'noop'
--   when it was already over | {'missing', name, counters} | 'nopool'
local lease_id, retention_us = ARGV[1], tonumber(ARGV[2])

local name, refused = pool_named('')
if not name then
  return refused
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw then
  return answer('missing', name, true)
end
local code = 'noop'
if redis.call('ZREM', K_DEADLINES, lease_id) == 1 then
  local now = now_us()
  raw = end_lease(lease_id, raw, now, retention_us)
  purge_history(now)
  code = 'released'
end
return answer(code, name, true, {raw})
