-- leave_queue.lua: a waiter leaves the pool's wait queue (see _wait.lua) at its deadline. A
-- lease handed to it in the meantime is not lost: it is picked up (extended to its full
-- duration) and returned, for the caller to take.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] waiter id (UUID string)
-- ARGV[2] the lease id a hand-off creates for it (UUID string)
-- ARGV[3] lease duration in microseconds (integer > 0)
-- Returns (see _pool.lua) {code, name, false, ...}: 'ok' with the fields of acquire.lua's
--   'ok' (covered 0, lease JSON, proxy id, state JSON, lease count, record; state and record
--   false when the proxy has been deleted since) when a lease had been handed; 'left'
--   otherwise | 'nopool'
local waiter, lease_id, duration_us = ARGV[1], ARGV[2], tonumber(ARGV[3])

local name, refused = pool_named('')
if not name then
  return refused
end
leave_queue(waiter)
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw or string.find(raw, '"released"', 1, true) then
  return answer('left', name, false)
end
local rec = pick_up(lease_id, raw, now_us(), duration_us)
local id = string.match(rec, '"proxy":%s*"([^"]+)"')
return answer('ok', name, false, {0, rec, id, redis.call('HGET', K_STATE, id),
              tonumber(redis.call('HGET', K_COUNTS, id)) or 0, redis.call('HGET', K_RECORDS, id)})
