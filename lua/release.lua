-- release.lua: release a lease; idempotent, and a no-op for a lease already over (so it never
-- touches the proxy's newer leases). It tells a release in time from one that came after the
-- lease's deadline: the holder then worked on without a valid lease (an overrun).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] retention of released lease records in microseconds (integer >= 0)
-- ARGV[3] '1' to have the pool counters in the reply, else '0'
-- Returns (see _pool.lua) {code, name, counters, lease JSON}: code 'released' (in time),
--   'expired' (its deadline had passed: ended now, or reclaimed before), or 'noop' (it was
--   released before) | {'missing', name, counters} | 'nopool'
local lease_id, retention_us, with_counters = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'

local name, refused = pool_named('')
if not name then
  return refused
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw then
  return answer('missing', name, with_counters)
end
if not string.find(raw, '"released"', 1, true) then
  local ended, expired = end_lease(lease_id, raw, now_us(), retention_us)
  return answer(expired and 'expired' or 'released', name, with_counters, {ended})
end
local rec = cjson.decode(raw)
local expired = tonumber(rec.released) >= tonumber(rec.expires)
return answer(expired and 'expired' or 'noop', name, with_counters, {raw})
