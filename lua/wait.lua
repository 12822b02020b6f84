-- wait.lua: a waiter of the pool's wait queue (see _wait.lua) looks whether a lease was
-- handed to it, and picks it up. First a bounded batch of the pool's due time line entries
-- is handled (as acquire.lua does): an expired lease's slot goes to the oldest waiter, so
-- the waiters themselves reclaim what a dead holder left.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] 'check' to stay in the queue, 'leave' to leave it (deadline reached)
-- ARGV[2] waiter id (UUID string)
-- ARGV[3] the lease id a hand-off creates (UUID string)
-- ARGV[4] lease duration in microseconds (integer > 0)
-- ARGV[5] retention of released lease records in microseconds (integer >= 0)
-- ARGV[6] most expired leases reclaimed by this call (integer >= 0)
-- Returns (see _pool.lua) {code, name, false, ...}: 'ok' with the fields of acquire.lua's
--   'ok' (covered 0, lease JSON, proxy id, state JSON, lease count, record): the lease was
--   handed and is now extended to its full duration (state and record false when the proxy
--   has been deleted since); 'queued' with 0, -1, the waiter's place (its score) and the
--   microseconds until the pool's earliest lease deadline ('' for none); 'left' (it left the
--   queue); 'gone' (not in the queue: past its deadline, the server lost it, or its handed
--   lease expired before it was picked up) | 'nopool'
local op, waiter, lease_id = ARGV[1], ARGV[2], ARGV[3]
local duration_us, retention_us = tonumber(ARGV[4]), tonumber(ARGV[5])
local reclaim_batch = tonumber(ARGV[6])
local LOOKAHEAD = 64  -- time line entries read to find the earliest active deadline

local name, refused = pool_named('')
if not name then
  return refused
end
local now = now_us()
if reclaim_batch > 0 then
  reclaim_due(now, retention_us, reclaim_batch)
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if raw and not string.find(raw, '"released"', 1, true) then
  leave_queue(waiter)  -- no longer in it after a hand-off; after a lease of its own, now
  local rec = pick_up(lease_id, raw, now, duration_us)
  local id = string.match(rec, '"proxy":%s*"([^"]+)"')
  return answer('ok', name, false, {0, rec, id, redis.call('HGET', K_STATE, id),
                tonumber(redis.call('HGET', K_COUNTS, id)) or 0, redis.call('HGET', K_RECORDS, id)})
end
local order = redis.call('ZSCORE', K_WAITERS, waiter)
if op == 'leave' then
  leave_queue(waiter)
  return answer('left', name, false)
end
if not order or raw then
  leave_queue(waiter)
  return answer('gone', name, false)
end
local next_at = next_deadline(LOOKAHEAD)
return answer('queued', name, false, {0, -1, order, next_at and int_str(next_at - now) or ''})
