-- release.lua: release a lease; idempotent, and a no-op for a lease already over (so it never
-- touches the proxy's newer leases). It tells a release in time from one that came after the
-- lease's deadline: the holder then worked on without a valid lease (an overrun).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] retention of released lease records in microseconds (integer >= 0)
-- ARGV[3] '1' to have the pool counters in the reply, else '0'
-- ARGV[4..10] optional: an outcome to apply to the lease's proxy (see _outcome.lua): kind
--   'ok' | 'failed' | 'blocked', the latency in ms (number) or the domain, then the storage's
--   OutcomePolicy: latency alpha, base and longest cool-down (us), failures that mark the
--   proxy inactive (0: never), block duration (us). Applied once per lease: a re-sent
--   release finds the record marked "o" and applies nothing again. Applied before the slot
--   is freed (and maybe handed to a waiter, see _wait.lua): release_reporting in _outcome.lua.
-- Returns (see _pool.lua) {code, name, counters, lease JSON}: code 'released' (in time),
--   'expired' (its deadline had passed: ended now, or reclaimed before), or 'noop' (it was
--   released before) | {'missing', name, counters} | 'nopool'
local lease_id, retention_us, with_counters = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'

local name, refused = pool_named('')
if not name then
  return refused
end
local outcome = outcome_from(ARGV, 4)
local now = now_us()
local code, rec = release_reporting(lease_id, outcome, now, retention_us)
if code == 'missing' then
  return answer('missing', name, with_counters)
end
return answer(code, name, with_counters, {rec})
