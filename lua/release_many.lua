-- release_many.lua: release several leases of one pool in one call, each exactly as
-- release.lua releases one: idempotent, a no-op for a lease already over, and telling a
-- release in time from one after the lease's deadline (an overrun); each with its outcome,
-- if it has one (applied once per lease, as release.lua applies it).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] retention of released lease records in microseconds (integer >= 0)
-- ARGV[2] the storage's OutcomePolicy as release.lua's ARGV[6..10] joined by spaces, or ''
--   when no lease has an outcome
-- ARGV[3..] one per lease: its id (UUID string), or '<id> <kind> <value>' for a lease with
--   an outcome (kind and value as release.lua's ARGV[4..5]; no value for 'failed')
-- Returns (see _pool.lua) {'ok', name, counters, then per lease in order: code, lease
--   JSON}: the code as release.lua's ('released' | 'expired' | 'noop' | 'missing', the JSON
--   false when missing) | 'nopool'
local retention_us = tonumber(ARGV[1])
local policy = words(ARGV[2] or '')

local name, refused = pool_named('')
if not name then
  return refused
end
local now = now_us()
local fields = {}
for i = 3, #ARGV do
  local entry = words(ARGV[i])
  local lease_id = entry[1]
  local o = entry[2] and outcome_from({entry[2], entry[3] or '', unpack(policy)}, 1) or nil
  local code, rec = release_reporting(lease_id, o, now, retention_us)
  fields[#fields + 1] = code
  fields[#fields + 1] = rec
end
return answer('ok', name, true, fields)
