-- release_many.lua: release several leases of one pool in one call, each exactly as
-- release.lua releases one: idempotent, a no-op for a lease already over, and telling a
-- release in time from one after the lease's deadline (an overrun).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] retention of released lease records in microseconds (integer >= 0)
-- ARGV[2..] lease ids (UUID strings)
-- Returns (see _pool.lua) {'ok', name, counters, then per lease id in order: code, lease
--   JSON}: the code as release.lua's ('released' | 'expired' | 'noop' | 'missing', the JSON
--   false when missing) | 'nopool'
local retention_us = tonumber(ARGV[1])

local name, refused = pool_named('')
if not name then
  return refused
end
local now = now_us()
local fields = {}
for i = 2, #ARGV do
  local lease_id = ARGV[i]
  local code, rec = release_one(lease_id, now, retention_us)
  fields[#fields + 1] = code
  fields[#fields + 1] = rec
end
return answer('ok', name, true, fields)
