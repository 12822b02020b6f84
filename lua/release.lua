-- release.lua: release a lease; idempotent, and a no-op for a lease already over (so it never
-- touches the proxy's newer leases). It tells a release in time from one that came after the
-- lease's deadline: the holder then worked on without a valid lease (an overrun).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] retention of released lease records in microseconds (integer >= 0)
-- Returns (see _pool.lua) {code, name, counters, lease JSON}: code 'released' (in time),
--   'expired' (its deadline had passed: ended now, or reclaimed before), or 'noop' (it was
--   released before) | {'missing', name, counters} | 'nopool'
local lease_id, retention_us = ARGV[1], tonumber(ARGV[2])

local name, refused = pool_named('')
if not name then
  return refused
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw then
  return answer('missing', name, true)
end
if redis.call('ZREM', K_DEADLINES, lease_id) == 1 then
  local now = now_us()
  local ended, expired = end_lease(lease_id, raw, now, retention_us)
  purge_history(now)
  return answer(expired and 'expired' or 'released', name, true, {ended})
end
local rec = cjson.decode(raw)
local expired = rec.released and tonumber(rec.released) >= tonumber(rec.expires)
return answer(expired and 'expired' or 'noop', name, true, {raw})
