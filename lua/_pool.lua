-- _pool.lua: helpers shared by every pool script. pharox_redis/scripts.py builds a pool script
-- as _common.lua, one line binding the pool's keys, this file, then the script's own body.
--
-- Every pool script receives the keys of one pool first, all under the pool's hash tag
-- <prefix>:{p:<pool-uuid>}, in the order of pharox_redis/keys.py's PoolKeys, which is their
-- one definition: scripts.py binds them to locals named after its fields (K_META, K_STATE,
-- K_COUNTS, K_RECORDS, K_FIRST, K_LEAST, K_RR, K_LATENCY, K_CURSOR, K_DEADLINES, K_LEASES,
-- K_HISTORY); PoolKeys' docstring says what each holds.
-- "Available" means status active and lease count below max concurrency (no max: unlimited);
-- a proxy is in all four availability sets or in none.
--
-- Every pool script answers {code, pool name, counters, fields...}: the pool's name (false
-- when there is no such pool), the five pool counters as one nested array {total, active,
-- available, leased, leases} (false when the script does not report them), then the
-- script's own fields. pharox_redis/replies.py parses each script's reply.
local COUNTERS = {'total', 'active', 'available', 'leased', 'leases'}
local PURGE_BATCH = 32

-- The five pool counters, in the order of COUNTERS.
local function counters()
  local values = redis.call('HMGET', K_META, unpack(COUNTERS))
  for i = 1, 5 do
    values[i] = tonumber(values[i]) or 0
  end
  return values
end

-- A reply: {code, name, counters (only `with_counters`), fields...}; `fields` may hold false.
local function answer(code, name, with_counters, fields)
  local out = {code, name or false, with_counters and counters() or false}
  for i = 1, fields and #fields or 0 do
    out[#out + 1] = fields[i]
  end
  return out
end

-- The pool's name when the pool exists and is called `expected` ('' accepts any name);
-- otherwise nil and the reply the script returns: 'nopool', or 'stale' with the pool's name.
local function pool_named(expected)
  local name = redis.call('HGET', K_META, 'name')
  if not name then
    return nil, answer('nopool', false, false)
  end
  if expected ~= '' and name ~= expected then
    return nil, answer('stale', name, false)
  end
  return name
end

-- A proxy as {st = decoded state, n = lease count}, or nil when it is not in this pool.
local function load_proxy(id)
  local raw = redis.call('HGET', K_STATE, id)
  if not raw then
    return nil
  end
  return {st = cjson.decode(raw), n = tonumber(redis.call('HGET', K_COUNTS, id)) or 0}
end

local function available(p)
  return p ~= nil and p.st.s == 'active' and (p.st.m == nil or p.n < p.st.m)
end

local function contribution(p)
  if p == nil then
    return {0, 0, 0, 0, 0}
  end
  return {1, p.st.s == 'active' and 1 or 0, available(p) and 1 or 0, p.n > 0 and 1 or 0, p.n}
end

-- Move proxy `id` from state `old` to state `new` (either may be nil) in the pool counters
-- and the four availability sets, touching only what changed.
local function reindex(id, old, new)
  local before, after = contribution(old), contribution(new)
  for i = 1, 5 do
    if after[i] ~= before[i] then
      redis.call('HINCRBY', K_META, COUNTERS[i], after[i] - before[i])
    end
  end
  local was, is = available(old), available(new)
  if was and not (is and old.st.c == new.st.c) then
    redis.call('ZREM', K_LEAST, old.st.c .. id)
  end
  if was and not is then
    redis.call('ZREM', K_FIRST, id)
    redis.call('ZREM', K_RR, id)
    redis.call('ZREM', K_LATENCY, id)
  end
  if is then
    if not was or old.st.f ~= new.st.f then
      redis.call('ZADD', K_FIRST, new.st.f, id)
    end
    if not was or old.n ~= new.n or old.st.c ~= new.st.c then
      redis.call('ZADD', K_LEAST, new.n, new.st.c .. id)
    end
    if not was then
      redis.call('ZADD', K_RR, 0, id)
    end
    if not was or old.st.l ~= new.st.l then
      redis.call('ZADD', K_LATENCY, new.st.l or 'inf', id)
    end
  end
end

-- Set a proxy's lease count to n and keep counters and sets in step.
local function set_leases(id, p, n)
  if n > 0 then
    redis.call('HSET', K_COUNTS, id, n)
  else
    redis.call('HDEL', K_COUNTS, id)
  end
  reindex(id, p, {st = p.st, n = n})
end

-- Drop at most PURGE_BATCH released lease records whose retention has passed.
local function purge_history(now)
  local old = redis.call('ZRANGEBYSCORE', K_HISTORY, '-inf', now, 'LIMIT', 0, PURGE_BATCH)
  if #old > 0 then
    redis.call('HDEL', K_LEASES, unpack(old))
    redis.call('ZREM', K_HISTORY, unpack(old))
  end
end

-- Finish an active lease the caller has just taken out of K_DEADLINES: stamp when it ended
-- (now, or its deadline if that came first: a lease never outlives its deadline, and
-- `released >= expires` then says it ended by expiry), schedule its record for purging and
-- give its slot back to the proxy (never below zero). Returns the updated record JSON and
-- whether it ended by expiry.
local function end_lease(lease_id, raw, now, retention_us)
  local rec = cjson.decode(raw)
  local due = tonumber(rec.expires)
  local ended = math.min(now, due)
  rec.released = int_str(ended)
  local encoded = cjson.encode(rec)
  redis.call('HSET', K_LEASES, lease_id, encoded)
  redis.call('ZADD', K_HISTORY, int_str(ended + retention_us), lease_id)
  local p = load_proxy(rec.proxy)
  if p and p.n > 0 then
    set_leases(rec.proxy, p, p.n - 1)
  end
  return encoded, due <= now
end

-- Release at most `batch` of this pool's leases whose deadline has passed. Returns how many
-- were released and whether the batch was full (more may be due).
local function reclaim_due(now, retention_us, batch)
  local due = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', int_str(now), 'LIMIT', 0, batch)
  for _, lease_id in ipairs(due) do
    redis.call('ZREM', K_DEADLINES, lease_id)
    local raw = redis.call('HGET', K_LEASES, lease_id)
    if raw then
      end_lease(lease_id, raw, now, retention_us)
    end
  end
  return #due, #due == batch
end

-- The cleanup index's entry for this pool (KEYS of schedule.lua, another slot) is known to
-- be at or before the pool's 'sched' field, when that is set: a lease expiring no earlier
-- needs no schedule.lua call. Acquire and lease scripts pipelined with schedule.lua lower it
-- to their deadline (note_scheduled); reclaim.lua sets it to what cleanup puts back.
local function scheduled_at()
  return tonumber(redis.call('HGET', K_META, 'sched'))
end

local function note_scheduled(deadline, sched)
  if sched == nil or deadline < sched then
    redis.call('HSET', K_META, 'sched', int_str(deadline))
    return deadline
  end
  return sched
end

-- Create lease `lease_id` on proxy `id` (loaded as `p`, known to be available) and return
-- its record JSON.
local function start_lease(id, p, lease_id, consumer_id, now, duration_us)
  local rec = cjson.encode({
    proxy = id, consumer = consumer_id,
    acquired = int_str(now), expires = int_str(now + duration_us),
  })
  redis.call('HSET', K_LEASES, lease_id, rec)
  redis.call('ZADD', K_DEADLINES, int_str(now + duration_us), lease_id)
  set_leases(id, p, p.n + 1)
  return rec
end
