-- acquire.lua: the whole of an acquire in one call. Reclaims this pool's expired leases (a
-- bounded batch), walks the available proxies in selector order (see _select.lua) and, when
-- the first candidate matches, leases it on the server clock. Candidates a Python predicate
-- must decide come back instead, for the caller to test and lease with lease.lua.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects (string)
-- ARGV[2] selector: first_available | least_used | round_robin | lowest_latency
-- ARGV[3] filter JSON from pharox_redis/filters.py, or '' for none
-- ARGV[4] offset: position in selector order to start at (integer >= 0)
-- ARGV[5] scan budget: most candidates examined by this call (integer >= 1)
-- ARGV[6] most undecided candidates returned (integer >= 1)
-- ARGV[7] lease id (UUID string chosen by the client; a retry with the same id returns the
--         lease already made instead of a second one)
-- ARGV[8] consumer id (UUID string)
-- ARGV[9] lease duration in microseconds (integer > 0)
-- ARGV[10] retention of released lease records in microseconds (integer >= 0)
-- ARGV[11] most expired leases reclaimed by this call (integer >= 0)
-- ARGV[12] '1' when schedule.lua follows in the same pipeline, else '0': then a lease is made
--   only if the pool's cleanup entry already covers it (see scheduled_at in _pool.lua)
-- ARGV[13] '1' to have the pool counters in the reply, else '0'
-- ARGV[14] target domain (normalised, see pharox_redis/outcome.py), or '' (or absent) for
--   none: proxies blocked for it are skipped (a waiter's target too: see hand_off)
-- ARGV[15] waiter id (UUID string) to join the pool's wait queue when nothing can be leased
--   (see _wait.lua), or '' (or absent) not to wait. A waiter sends this again to look: a
--   lease handed to it (ARGV[7]) is then picked up (extended to its full duration) and
--   answered 'exists'; a lease it gets from the walk takes it out of the queue
-- ARGV[16] how long the waiter waits, in microseconds (integer > 0; with a waiter id)
-- ARGV[17] the channel its hand-off is published on (keys.py handoff_channel)
-- ARGV[18] its place in the queue: a score it had before, or '' to join now
-- ARGV[19] how long a lease handed to it while it is not seen listening waits to be picked
--   up, in microseconds (integer > 0; see _wait.lua). A waiter's lease may then be handed
--   with a deadline min(ARGV[19], ARGV[9]) ahead, so that is what the pool's cleanup entry
--   must cover (ARGV[12]) for an acquire with a waiter
-- Before walking, a bounded step puts back proxies whose cool-down ended (restore_due in
-- _outcome.lua; a waiter may be handed one there).
-- Returns (see _pool.lua) {code, name, counters, covered, ...}: covered is 1 when a later
--   lease of the same duration needs no schedule.lua call; then by code:
--   'ok' | 'exists': lease JSON, proxy id, state JSON, lease count, record (state and
--     record are false when the proxy has been deleted since)
--   'scan': next offset (-1 when the order is exhausted), candidate items (see walk);
--     no items and offset -1 means nothing matches, and then follow 'miss', why (see the
--     miss below), proxies, ACTIVE proxies, available proxies
--   'queued' (with a waiter id, when the order is exhausted): next offset (-1), the waiter's
--     place (its score), the microseconds until the pool's earliest lease deadline or end of
--     a cool-down or block ('' for none), then the candidate items as for 'scan' (undecided
--     ones the caller may still take), then the miss as for 'scan' when there are none
--   or {'schedule', name, false}: nothing was leased or queued (expired leases may have been
--   reclaimed); send again with schedule.lua pipelined
--   or {'build', name, false}: the selector's set is being built (one bounded step per
--     call, see ensure_set in _pool.lua); nothing was leased: send again
--   | 'nopool' | 'stale'
local expected_name, selector, filter_json = ARGV[1], ARGV[2], ARGV[3]
local offset, budget, max_undecided = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local lease_id, consumer_id, duration_us = ARGV[7], ARGV[8], tonumber(ARGV[9])
local retention_us, reclaim_batch = tonumber(ARGV[10]), tonumber(ARGV[11])
local with_schedule, with_counters = ARGV[12] == '1', ARGV[13] == '1'
local target = (ARGV[14] or '') ~= '' and ARGV[14] or nil
local waiter, wait_us, channel, place, pickup_us = ARGV[15] or '', ARGV[16], ARGV[17], ARGV[18],
  ARGV[19]
local cover_us = duration_us  -- how soon a lease made by (or for) this caller may expire
if waiter ~= '' then
  cover_us = math.min(tonumber(pickup_us), duration_us)
end

local name, refused = pool_named(expected_name)
if not name then
  return refused
end

local sched = scheduled_at()

local function leased(code, rec, proxy_id, state, count, record)
  return answer(code, name, with_counters, {sched and 1 or 0, rec, proxy_id, state, count, record})
end

local function made(existing)
  if waiter ~= '' and not string.find(existing, '"released"', 1, true) then
    existing = pick_up(lease_id, existing, now_us(), duration_us)  -- handed to the waiter
  end
  local id = string.match(existing, '"proxy":%s*"([^"]+)"')
  return leased('exists', existing, id, redis.call('HGET', K_STATE, id),
                tonumber(redis.call('HGET', K_COUNTS, id)) or 0, redis.call('HGET', K_RECORDS, id))
end

local existing = redis.call('HGET', K_LEASES, lease_id)
if existing then
  return made(existing)
end

local now = now_us()
if not with_schedule and (sched == nil or sched > now + duration_us) then
  return answer('schedule', name, false)
end
local freed = reclaim_batch > 0 and reclaim_due(now, retention_us, reclaim_batch) > 0
freed = (COOL ~= nil and COOL <= now) or freed  -- a proxy back from a cool-down is handed too
restore_due(now)
if freed and waiter ~= '' then
  existing = redis.call('HGET', K_LEASES, lease_id)  -- a slot handed to this waiter meanwhile
  if existing then
    return made(existing)
  end
end
local set = SELECTOR_SETS[selector]
if not ensure_set(set) then
  return answer('build', name, false)
end
note_use(set, now)

local items = {}
local next_offset = walk(items, selector, filter_json, offset, budget, max_undecided, target, now)
if items[2] == 1 then
  local id, state, record = items[1], items[3], items[5]
  local rec, count = start_lease(id, state, lease_id, consumer_id, now, duration_us)
  if with_schedule then
    sched = note_scheduled(now + cover_us, sched)
  end
  if selector == 'round_robin' then
    redis.call('SET', K_CURSOR, id)
  end
  if waiter ~= '' and place ~= '' then  -- it was queued: it leaves
    leave_queue(waiter)
  end
  return leased('ok', rec, id, state, count, record)
end
local out
if waiter ~= '' and next_offset == -1 then
  if not with_schedule and sched > now + cover_us then  -- see ARGV[19]; nothing was leased
    return answer('schedule', name, false)
  end
  local order = join_queue(waiter, place, now, tonumber(wait_us), filter_json, target or '',
                           consumer_id, duration_us, channel, lease_id, tonumber(pickup_us))
  if with_schedule then  -- a lease handed to it is covered (see hand_off in _wait.lua)
    sched = note_scheduled(now + cover_us, sched)
  end
  local next_at = next_deadline(64)
  if COOL ~= nil and (next_at == nil or COOL < next_at) then  -- a cool-down or block may end
    next_at = math.max(COOL, now)
  end
  out = answer('queued', name, with_counters, {sched and 1 or 0, next_offset, order,
                                               next_at and int_str(next_at - now) or ''})
else
  out = answer('scan', name, with_counters, {sched and 1 or 0, next_offset})
end
for _, value in ipairs(items) do
  out[#out + 1] = value
end
if next_offset < 0 and #items == 0 then
  -- Why nothing could be leased, read in the same call (pharox_redis/misses.py names them):
  -- 'no-active-proxy' (none is ACTIVE); with none free, 'cooling-down' when an ACTIVE proxy
  -- is in an outcome's cool-down (K_COOLING, _outcome.lua; it outranks busy ones: both come
  -- back by waiting), else 'all-busy' (every ACTIVE proxy is at its max); with a target,
  -- 'blocked-for-target' when every free proxy is blocked for it (checked when at most
  -- `budget` are free); else 'no-match' (the filter matched none of the free ones).
  local total, active = redis.call('HLEN', K_STATE), tonumber(redis.call('HGET', K_META, 'active')) or 0
  local order = SET_KEYS[set]
  local free = redis.call('ZCARD', order)
  local why = 'no-match'
  if active == 0 then
    why = 'no-active-proxy'
  elseif free == 0 then
    why = 'all-busy'
    -- the earliest-ending cool-downs (an INACTIVE proxy may keep one: carry_outcomes)
    for _, id in ipairs(redis.call('ZRANGE', K_COOLING, 0, RESTORE_STEP - 1)) do
      local state = redis.call('HGET', K_STATE, id)
      if state and string.find(state, '"s":"active"', 1, true) then
        why = 'cooling-down'
        break
      end
    end
  elseif target and free <= budget then
    why = 'blocked-for-target'
    for _, member in ipairs(redis.call('ZRANGE', order, 0, -1)) do
      if not blocked(target, selector == 'least_used' and string.sub(member, -36) or member, now) then
        why = 'no-match'
        break
      end
    end
  end
  for _, value in ipairs({'miss', why, total, active, free}) do
    out[#out + 1] = value
  end
end
return out
