-- _wait.lua: the wait queue of acquire(..., wait=). pharox_redis/scripts.py puts it after
-- _outcome.lua and _select.lua in front of every pool script, since any of them may free a
-- slot.
--
-- A waiter joins (acquire.lua, when its walk found nothing to lease) with an entry in
-- K_WAITERS (FIFO: scored by when it joined) and K_WAITING (its filter, target, consumer,
-- lease duration, wait deadline, channel and the lease id to create; see keys.py), and sets
-- the meta field 'wq', which pool_named reads with the rest of the head: a script that frees
-- a slot looks at the queue only when 'wq' is set, and clears it when it finds it empty.
--
-- Hand-off: where a slot is freed (free_slot: a release, an expiry reclaim, a lost renewal)
-- or a proxy becomes available (reindex: saved or health-checked ACTIVE, a higher max), the
-- slot goes, in the same script, to the oldest of the first WAIT_SCAN waiters whose filter
-- the proxy satisfies (a Python predicate counts as a match: the waiter decides) and whose
-- target it is not blocked for (blocked() in _outcome.lua). A proxy in a cool-down is never
-- handed (usable() in _pool.lua); one coming back from it (restore_due, through reindex) is
-- handed like one becoming ACTIVE; an outcome a release reports is applied before its slot
-- is freed, so a proxy that outcome cools down is not handed. Waiters past their deadline
-- are dropped on the way. The lease is created with the waiter's lease id and published on
-- the waiter's channel with everything the waiter needs to use it (handoff_message), so a
-- waiter that is listening takes it without another round trip.
--
-- A waiter that died must not strand the proxy. Whether someone listens on its channel is
-- known (PUBSUB NUMSUB, on this node): when someone does, the lease runs its full duration;
-- when nobody does (the waiter died, its connection dropped, or on a Redis Cluster it
-- listens on another node), the lease gets a deadline only the waiter's pickup time ahead
-- (`p`, at most its duration) and the message says so: the waiter, if alive, picks it up
-- (acquire.lua sent again, or leave_queue.lua), which extends it to its full duration;
-- otherwise it expires and its reclaim (by any acquire, or the other waiters' looks) hands
-- the slot on. A channel is not a key: KEYS stay the pool's keys.
--
-- Cleanup must visit the pool by a handed lease's deadline, and a hand-off cannot reach the
-- cleanup index (another slot). A waiter joins and looks only while the index covers
-- min(p, d) from then (acquire.lua, with schedule.lua pipelined when it does not), and a
-- handed lease never expires before the pool's 'sched' (where the index entry is at the
-- latest): so the entry always covers it. A cleanup visit (reclaim.lua) puts the entry back
-- no later than queue_horizon() while waiters wait, so a lease handed to a dead waiter
-- comes back within about its pickup time.
local WAIT_SCAN = 16  -- oldest waiters one hand-off examines

local function leave_queue(waiter)
  redis.call('ZREM', K_WAITERS, waiter)
  redis.call('HDEL', K_WAITING, waiter)
end

-- A hand-off message: netstrings ("<length>:<bytes>") of the waiter id, the lease id, '1'
-- when the lease runs its full duration ('0': pick it up), the lease record, the proxy id,
-- its state JSON, its lease count and its record. pharox_redis/operations/waiting.py reads it.
local function handoff_message(waiter, lease_id, full, rec, id, state, count, record)
  local out = {}
  local fields = {waiter, lease_id, full and '1' or '0', rec, id, state, tostring(count), record}
  for _, field in ipairs(fields) do
    out[#out + 1] = #field .. ':' .. field
  end
  return table.concat(out)
end

hand_off = function(id, freeing, now)
  local state = redis.call('HGET', K_STATE, id)
  if not state or not usable(state) then  -- inactive, or in a cool-down (_outcome.lua)
    return false
  end
  local m = tonumber(string.match(state, '"m":(%d+)'))
  local n = tonumber(redis.call('HGET', K_COUNTS, id)) or 0
  if freeing then  -- the slot being freed must be one held, and leave room once freed
    if n < 1 or (m ~= nil and n - 1 >= m) then
      return false
    end
  elseif m ~= nil and n >= m then
    return false
  end
  local queue = redis.call('ZRANGE', K_WAITERS, 0, WAIT_SCAN - 1)
  if #queue == 0 then
    redis.call('HDEL', K_META, 'wq')
    WQ = false
    return false
  end
  now = now or now_us()
  local decoded = nil
  for _, waiter in ipairs(queue) do
    local raw = redis.call('HGET', K_WAITING, waiter)
    local entry = raw and cjson.decode(raw)
    if not entry or tonumber(entry.x) <= now or redis.call('HEXISTS', K_LEASES, entry.l) == 1 then
      leave_queue(waiter)  -- gone, past its deadline, or its lease exists already
    else
      local fits = not blocked((entry.t or '') ~= '' and entry.t or nil, id, now)
      if fits and entry.f ~= '' then
        decoded = decoded or cjson.decode(state)
        fits = matches(cjson.decode(entry.f), decoded) ~= false
      end
      if fits then
        leave_queue(waiter)
        local duration = tonumber(entry.d)
        local listened = redis.call('PUBSUB', 'NUMSUB', entry.k)[2] > 0
        if not listened then
          duration = math.min(tonumber(entry.p), duration)
        end
        if SCHED ~= nil and SCHED > now + duration then  -- no earlier than the cleanup entry
          duration = SCHED - now
        end
        local rec = lease_record(id, entry.c, now, duration)
        if freeing then  -- the freed slot is the one handed: count and sets stay as they are
          write_lease(entry.l, rec, now, duration)
        else
          rec, n = start_lease(id, state, entry.l, entry.c, now, duration)
        end
        redis.call('PUBLISH', entry.k, handoff_message(waiter, entry.l, listened, rec, id, state,
                                                        n, redis.call('HGET', K_RECORDS, id)))
        return true
      end
    end
  end
  return false
end

-- Put a waiter in the queue at `order` (server us; '' for now, keeping an earlier place if
-- it has one) until `now + wait_us`. `target` is its acquire's target domain ('' for none).
local function join_queue(waiter, order, now, wait_us, filter_json, target, consumer_id,
                          duration_us, channel, lease_id, pickup_us)
  if order == '' then
    order = int_str(now)
    if redis.call('ZADD', K_WAITERS, 'NX', order, waiter) == 0 then  -- a re-sent join
      order = redis.call('ZSCORE', K_WAITERS, waiter)
    end
  else
    redis.call('ZADD', K_WAITERS, order, waiter)
  end
  redis.call('HSET', K_WAITING, waiter, cjson.encode({
    f = filter_json, t = target, c = consumer_id, d = int_str(duration_us),
    x = int_str(now + wait_us), k = channel, l = lease_id, p = int_str(pickup_us)}))
  if not WQ then
    redis.call('HSET', K_META, 'wq', '1')
    WQ = true
  end
  return order
end

-- The earliest time a lease handed to one of the oldest waiters may expire (now plus the
-- least of their pickup times and durations), or nil when the queue is empty.
local function queue_horizon(now)
  local soonest = nil
  for _, waiter in ipairs(redis.call('ZRANGE', K_WAITERS, 0, WAIT_SCAN - 1)) do
    local raw = redis.call('HGET', K_WAITING, waiter)
    if raw then
      local entry = cjson.decode(raw)
      local due = now + math.min(tonumber(entry.p), tonumber(entry.d))
      if soonest == nil or due < soonest then
        soonest = due
      end
    end
  end
  return soonest
end

-- Pick up a lease handed to a waiter (record JSON `raw`, not released): its deadline moves
-- to `duration_us` after now. Returns the updated record.
local function pick_up(lease_id, raw, now, duration_us)
  local expires = int_str(now + duration_us)
  local encoded = string.gsub(raw, '"expires":%s*"%d+"', '"expires":"' .. expires .. '"', 1)
  redis.call('HSET', K_LEASES, lease_id, encoded)
  redis.call('ZADD', K_DEADLINES, expires, lease_id)
  return encoded
end
