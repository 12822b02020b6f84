-- _pool.lua: helpers shared by every pool script. pharox_redis/scripts.py puts this file in
-- front of each pool script, so a script is this prelude followed by its own body.
--
-- Every pool script receives the same twelve KEYS first, all under the pool's hash tag
-- <prefix>:{p:<pool-uuid>} (pharox_redis/keys.py, PoolKeys.block):
--   KEYS[1]  :meta       hash  name, description, total, active, available, leased, leases
--   KEYS[2]  :state      hash  proxy id -> JSON of every field Lua reads (see codec.ProxyState)
--   KEYS[3]  :counts     hash  proxy id -> current lease count (absent when 0)
--   KEYS[4]  :records    hash  proxy id -> msgpack of host, port, protocol, credentials
--   KEYS[5]  :first      zset  available proxies; score -checked_at_us, member id
--   KEYS[6]  :least      zset  available proxies; score lease count, member <checked18><id>
--   KEYS[7]  :rr         zset  available proxies; score 0, member id (lexicographic = UUID order)
--   KEYS[8]  :latency    zset  available proxies; score last reachable latency ms or inf, member id
--   KEYS[9]  :cursor     string  id of the proxy ROUND_ROBIN handed out last
--   KEYS[10] :deadlines  zset  active lease id -> expires_at in microseconds
--   KEYS[11] :leases     hash  lease id -> JSON {proxy, consumer, acquired, expires, released}
--   KEYS[12] :history    zset  released lease id -> purge time in microseconds
-- "Available" means status active and lease count below max concurrency (no max: unlimited);
-- a proxy is in all four availability sets or in none.
local K_META, K_STATE, K_COUNTS, K_RECORDS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local K_FIRST, K_LEAST, K_RR, K_LATENCY = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local K_CURSOR, K_DEADLINES, K_LEASES, K_HISTORY = KEYS[9], KEYS[10], KEYS[11], KEYS[12]

local COUNTERS = {'total', 'active', 'available', 'leased', 'leases'}
local PURGE_BATCH = 32

-- The server clock in microseconds (exact: below 2^53 until the year 2255).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An integer as a decimal string without exponent (tostring would round to 14 digits).
local function int_str(n)
  return string.format('%.0f', n)
end

-- The pool's name when the pool exists and is called `expected` ('' accepts any name);
-- otherwise nil and the reply the script returns: {'nopool'} or {'stale', actual name}.
local function pool_named(expected)
  local name = redis.call('HGET', K_META, 'name')
  if not name then
    return nil, {'nopool'}
  end
  if expected ~= '' and name ~= expected then
    return nil, {'stale', name}
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

-- Finish an active lease the caller has just taken out of K_DEADLINES: stamp it released,
-- schedule its record for purging and give its slot back to the proxy (never below zero).
-- Returns the updated lease record JSON.
local function end_lease(lease_id, raw, now, retention_us)
  local rec = cjson.decode(raw)
  rec.released = int_str(now)
  local encoded = cjson.encode(rec)
  redis.call('HSET', K_LEASES, lease_id, encoded)
  redis.call('ZADD', K_HISTORY, int_str(now + retention_us), lease_id)
  local p = load_proxy(rec.proxy)
  if p and p.n > 0 then
    set_leases(rec.proxy, p, p.n - 1)
  end
  return encoded
end

-- The pool counters in _STATS order (total, active, available, leased, leases), appended
-- to a reply so the caller has the pool stats without another round trip.
local function append_counters(out)
  local values = redis.call('HMGET', K_META, unpack(COUNTERS))
  for i = 1, 5 do
    out[#out + 1] = tonumber(values[i]) or 0
  end
  return out
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

-- Code shared above; the script's own body follows.
