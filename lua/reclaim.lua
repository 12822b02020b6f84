-- reclaim.lua: release this pool's expired leases (deadline <= server time) and purge the
-- records whose retention has passed, a bounded batch of the time line (see _pool.lua).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] retention of released lease records in microseconds (integer >= 0)
-- ARGV[2] batch size: most time line entries handled by this call (integer > 0)
-- Sets the pool's 'sched' field (see _pool.lua) to `next`, where cleanup puts the pool's
-- entry in the global index back: no later than a lease handed to a waiter may expire
-- (queue_horizon in _wait.lua) while the pool has waiters.
-- Returns (see _pool.lua) {'ok', name, false, reclaimed, more, next}: how many leases were
--   reclaimed; more = 1 when the batch was full; next = the earliest remaining deadline in
--   microseconds (or an earlier purge time, when many records are retained; or when a lease
--   handed to a waiter may expire, see above), or '' when no lease is active and nobody
--   waits | 'nopool'
local retention_us, batch = tonumber(ARGV[1]), tonumber(ARGV[2])
local LOOKAHEAD = 64  -- time line entries read to find the earliest active deadline

local name, refused = pool_named('')
if not name then
  return refused
end
local now = now_us()
local reclaimed, more = reclaim_due(now, retention_us, batch)
restore_due(now)  -- proxies whose cool-down ended (_outcome.lua)
-- The earliest active deadline (next_deadline in _pool.lua).
local next_at = next_deadline(LOOKAHEAD)
if WQ then  -- waiters wait: come back by the time a lease handed to one may expire
  local horizon = queue_horizon(now)
  if horizon ~= nil and (next_at == nil or horizon < next_at) then
    next_at = horizon
  end
end
next_at = next_at and int_str(next_at)
-- Cleanup puts the index entry back at `next_at` (or drops it): mirror that in 'sched'.
if next_at then
  redis.call('HSET', K_META, 'sched', next_at)
else
  redis.call('HDEL', K_META, 'sched')
end
return answer('ok', name, false, {reclaimed, more and 1 or 0, next_at or ''})
