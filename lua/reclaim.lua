-- reclaim.lua: release this pool's expired leases (deadline <= server time), a bounded batch.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] retention of released lease records in microseconds (integer >= 0)
-- ARGV[2] batch size: most leases reclaimed by this call (integer > 0)
-- Sets the pool's 'sched' field (see _pool.lua) to `next`, where cleanup puts the pool's
-- entry in the global index back.
-- Returns (see _pool.lua) {'ok', name, false, reclaimed, more, next}: how many were
--   reclaimed; more = 1 when the batch was full; next = the earliest remaining deadline in
--   microseconds, or '' when no lease is active | 'nopool'
local retention_us, batch = tonumber(ARGV[1]), tonumber(ARGV[2])

local name, refused = pool_named('')
if not name then
  return refused
end
local now = now_us()
local reclaimed, more = reclaim_due(now, retention_us, batch)
purge_history(now)
local first = redis.call('ZRANGE', K_DEADLINES, 0, 0, 'WITHSCORES')
-- Cleanup puts the index entry back at `first` (or drops it): mirror that in 'sched'.
if first[2] then
  redis.call('HSET', K_META, 'sched', first[2])
else
  redis.call('HDEL', K_META, 'sched')
end
return answer('ok', name, false, {reclaimed, more and 1 or 0, first[2] or ''})
