-- _wait.lua: the wait queue of acquire(..., wait=). pharox_redis/scripts.py puts it after
-- _select.lua in front of every pool script, since any of them may free a slot.
--
-- A waiter joins (acquire.lua, when its walk found nothing to lease) with an entry in
-- K_WAITERS (FIFO: scored by when it joined) and K_WAITING (its filter, consumer, lease
-- duration, wait deadline, channel and the lease id to create; see keys.py), and sets the
-- meta field 'wq', which pool_named reads with the rest of the head: a script that frees a
-- slot looks at the queue only when 'wq' is set, and clears it when it finds the queue empty.
--
-- Hand-off: where a slot is freed (free_slot: a release, an expiry reclaim, a lost renewal)
-- or a proxy becomes available (reindex: saved or health-checked ACTIVE, a higher max), the
-- slot goes, in the same script, to the oldest of the first WAIT_SCAN waiters whose filter
-- the proxy satisfies (a Python predicate counts as a match: the waiter decides). Waiters
-- past their deadline are dropped on the way. The lease is created with the waiter's lease
-- id, its deadline only PICKUP_US ahead (at most its duration), and the waiter's id is
-- published on its channel. The waiter picks the lease up (acquire.lua sent again with its
-- waiter id, or leave_queue.lua at its deadline), which extends it to its full duration; a
-- waiter that died never does, so the lease expires within PICKUP_US and its reclaim (by
-- any acquire, or the other waiters' looks) hands the slot on. A channel is not a key: KEYS
-- stay the pool's keys.
local WAIT_SCAN = 16  -- oldest waiters one hand-off examines
local PICKUP_US = 5000000  -- how long a handed lease waits for its waiter to pick it up

local function leave_queue(waiter)
  redis.call('ZREM', K_WAITERS, waiter)
  redis.call('HDEL', K_WAITING, waiter)
end

hand_off = function(id)
  local state = redis.call('HGET', K_STATE, id)
  if not state or not string.find(state, '"s":"active"', 1, true) then
    return false
  end
  local m = tonumber(string.match(state, '"m":(%d+)'))
  if m ~= nil and (tonumber(redis.call('HGET', K_COUNTS, id)) or 0) >= m then
    return false
  end
  local queue = redis.call('ZRANGE', K_WAITERS, 0, WAIT_SCAN - 1)
  if #queue == 0 then
    redis.call('HDEL', K_META, 'wq')
    WQ = false
    return false
  end
  local now = now_us()
  local decoded = nil
  for _, waiter in ipairs(queue) do
    local raw = redis.call('HGET', K_WAITING, waiter)
    local entry = raw and cjson.decode(raw)
    if not entry or tonumber(entry.x) <= now or redis.call('HEXISTS', K_LEASES, entry.l) == 1 then
      leave_queue(waiter)  -- gone, past its deadline, or its lease exists already
    else
      local fits = true
      if entry.f ~= '' then
        decoded = decoded or cjson.decode(state)
        fits = matches(cjson.decode(entry.f), decoded) ~= false
      end
      if fits then
        leave_queue(waiter)
        start_lease(id, state, entry.l, entry.c, now, math.min(PICKUP_US, tonumber(entry.d)))
        redis.call('PUBLISH', entry.k, waiter)
        return true
      end
    end
  end
  return false
end

-- Put a waiter in the queue at `order` (server us; '' for now, keeping an earlier place if
-- it has one) until `now + wait_us`.
local function join_queue(waiter, order, now, wait_us, filter_json, consumer_id, duration_us,
                          channel, lease_id)
  if order == '' then
    redis.call('ZADD', K_WAITERS, 'NX', int_str(now), waiter)
  else
    redis.call('ZADD', K_WAITERS, order, waiter)
  end
  redis.call('HSET', K_WAITING, waiter, cjson.encode({
    f = filter_json, c = consumer_id, d = int_str(duration_us), x = int_str(now + wait_us),
    k = channel, l = lease_id}))
  if not WQ then
    redis.call('HSET', K_META, 'wq', '1')
    WQ = true
  end
  return redis.call('ZSCORE', K_WAITERS, waiter)
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
