-- _pool.lua: helpers shared by every pool script. pharox_redis/scripts.py builds a pool script
-- as _common.lua, one line binding the pool's keys, this file, then the script's own body.
--
-- Every pool script receives the keys of one pool first, all under the pool's hash tag
-- <prefix>:{p:<pool-uuid>}, in the order of pharox_redis/keys.py's PoolKeys, which is their
-- one definition: scripts.py binds them to locals named after its fields (K_META, K_STATE,
-- K_COUNTS, K_RECORDS, K_FIRST, K_LEAST, K_RR, K_LATENCY, K_CURSOR, K_DEADLINES, K_LEASES,
-- K_COOLING, K_BLOCKED, K_WAITERS, K_WAITING); PoolKeys' docstring says what each holds.
--
-- "Available" means usable (status active and not in a cool-down: usable() and usable_st())
-- and lease count below max concurrency (no max: unlimited). A proxy in a cool-down (state
-- field 'k', see _outcome.lua) is in no availability set; _outcome.lua puts it back.
-- The availability sets (one per selector order) are kept only for the selectors the pool
-- has been asked for: meta field 'set:<set>' is 'r' when the set is ready, an HSCAN cursor
-- while it is being built (ensure_set), absent when the set is not kept. Every script that
-- changes a proxy keeps every set that is ready or being built, so a set built while leasing
-- goes on is exact when its build ends. A kept set holds exactly the available proxies.
--
-- Lease records live in K_LEASES; K_DEADLINES is their one time line: an active lease is
-- scored at its deadline (a whole number of microseconds), a released one at its purge time
-- plus half a microsecond (exact below 2^52 us, the year 2112). One range query therefore
-- finds both the leases to reclaim and the records to purge, and tells them apart by score.
--
-- Every pool script answers {code, pool name, counters, fields...}: the pool's name (false
-- when there is no such pool), the five pool counters as one nested array {total, active,
-- available, leased, leases} (false unless the caller asked for them: they are derived, see
-- counters()), then the script's own fields. pharox_redis/replies.py parses each reply.
local SET_NAMES = {'first', 'least', 'rr', 'latency'}
-- Each set's key; pool_named fills it on every call (in a function library this file runs
-- once, before any call has bound the keys).
local SET_KEYS = {}
local SELECTOR_SETS = {first_available = 'first', least_used = 'least',
                       round_robin = 'rr', lowest_latency = 'latency'}
-- The meta fields pool_named reads in one HMGET (and then by name, never by place).
local META_HEAD = {'name', 'sched', 'set:first', 'set:least', 'set:rr', 'set:latency',
                   'used:first', 'used:least', 'used:rr', 'used:latency', 'cool', 'wq'}
local BUILD_STEP = 2000  -- proxies one ensure_set call adds to a set being built
local USE_REFRESH_S = 3600  -- how stale a set's 'used:<set>' stamp may get before it is rewritten

-- What pool_named read from K_META: SETS[set] is 'r', a build cursor, or nil; USED[set] the
-- last use stamp (server seconds) or nil; SCHED the pool's 'sched' field or nil; COOL the
-- 'cool' field (see _outcome.lua) or nil; WQ true when the meta field 'wq' says the wait
-- queue may hold waiters (see _wait.lua).
local SETS, USED, SCHED, COOL, WQ = {}, {}, nil, nil, false
-- hand_off(id, freeing, now): give a slot of proxy `id` (one being freed, or a free one) to
-- the oldest waiter it fits; defined in _wait.lua (after _outcome.lua and _select.lua, whose
-- blocked() and filter matcher it uses). Returns true when it did.
local hand_off

-- The lease count and status of a proxy, and the fields its placements need, read from its
-- state JSON without decoding it: pharox_redis/codec.py writes these keys (cjson may reorder
-- them), and a quote inside a JSON string is always escaped, so '"m":' matches only the key.
local function peek(state)
  return {
    s = string.match(state, '"s":"(%a+)"'),
    m = tonumber(string.match(state, '"m":(%d+)')),
    c = string.match(state, '"c":"(%d+)"'),
    f = string.match(state, '"f":"(%-?%d+)"'),
    l = tonumber(string.match(state, '"l":(%d+)')),
    k = string.match(state, '"k":"(%d+)"'),
  }
end

-- Whether a proxy may be leased at all, whatever its lease count: status active and not in a
-- cool-down. usable() reads the state JSON, usable_st() a decoded or peeked state; a hand-off
-- to a waiting acquire must check it too.
local function usable(state)
  return string.find(state, '"s":"active"', 1, true) ~= nil
    and string.find(state, '"k":"', 1, true) == nil
end

local function usable_st(st)
  return st.s == 'active' and st.k == nil
end

-- The five pool counters, derived: total = proxies, active = the 'active' field scripts keep
-- (it changes only with a proxy's status), leased and leases from K_COUNTS, available = the
-- size of a ready set, or else active minus the active proxies that are full.
-- Work: O(leased proxies).
local function counters()
  local total = redis.call('HLEN', K_STATE)
  local active = tonumber(redis.call('HGET', K_META, 'active')) or 0
  local flat = redis.call('HGETALL', K_COUNTS)
  local leases = 0
  for i = 2, #flat, 2 do
    leases = leases + tonumber(flat[i])
  end
  local available = nil
  for _, set in ipairs(SET_NAMES) do
    if SETS[set] == 'r' then
      available = redis.call('ZCARD', SET_KEYS[set])
      break
    end
  end
  if available == nil then
    available = active
    for i = 1, #flat, 2 do
      local state = redis.call('HGET', K_STATE, flat[i])
      if state then
        local st = peek(state)
        if usable_st(st) and st.m and tonumber(flat[i + 1]) >= st.m then
          available = available - 1
        end
      end
    end
    -- Active proxies in a cool-down (their lease count does not matter: not counted above);
    -- COOL is absent when there is none (see _outcome.lua).
    local cooling = COOL and redis.call('ZRANGE', K_COOLING, 0, -1) or {}
    for _, id in ipairs(cooling) do
      local state = redis.call('HGET', K_STATE, id)
      if state and string.find(state, '"s":"active"', 1, true) and not usable(state) then
        available = available - 1
      end
    end
  end
  return {total, active, available, #flat / 2, leases}
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
-- Reads the meta fields every script needs in the same call (SETS, USED, SCHED, COOL, WQ).
local function pool_named(expected)
  SET_KEYS.first, SET_KEYS.least, SET_KEYS.rr, SET_KEYS.latency = K_FIRST, K_LEAST, K_RR, K_LATENCY
  local values, head = redis.call('HMGET', K_META, unpack(META_HEAD)), {}
  for i, field in ipairs(META_HEAD) do
    head[field] = values[i]
  end
  local name = head.name
  if not name then
    return nil, answer('nopool', false, false)
  end
  SCHED = tonumber(head.sched)
  COOL = tonumber(head.cool)
  WQ = head.wq and true or false
  for _, set in ipairs(SET_NAMES) do
    SETS[set] = head['set:' .. set] or nil
    USED[set] = tonumber(head['used:' .. set])
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
  return p ~= nil and usable_st(p.st) and (p.st.m == nil or p.n < p.st.m)
end

-- Member and score of an available proxy in a set (st: decoded or peeked state).
local function placement(set, id, st, n)
  if set == 'first' then
    return id, st.f
  elseif set == 'least' then
    return st.c .. id, n
  elseif set == 'rr' then
    return id, 0
  end
  return id, st.l or 'inf'
end

-- Move proxy `id` from state `old` to state `new` (either may be nil) in the 'active'
-- counter and the kept availability sets, touching only what changed.
local function reindex(id, old, new)
  local was_active = old ~= nil and old.st.s == 'active'
  local is_active = new ~= nil and new.st.s == 'active'
  if was_active ~= is_active then
    redis.call('HINCRBY', K_META, 'active', is_active and 1 or -1)
  end
  local was, is = available(old), available(new)
  for _, set in ipairs(SET_NAMES) do
    if SETS[set] then
      local key = SET_KEYS[set]
      local old_member, old_score, new_member, new_score
      if was then
        old_member, old_score = placement(set, id, old.st, old.n)
      end
      if is then
        new_member, new_score = placement(set, id, new.st, new.n)
      end
      if was and old_member ~= new_member then
        redis.call('ZREM', key, old_member)
      end
      if is and (old_member ~= new_member or tostring(old_score) ~= tostring(new_score)) then
        redis.call('ZADD', key, new_score, new_member)
      end
    end
  end
  local roomier = was and is and new.st.m ~= old.st.m and (new.st.m == nil or old.st.m ~= nil
                                                          and new.st.m > old.st.m)
  if WQ and is and (not was or roomier) then  -- new free slots go to waiters first
    while hand_off(id, false) do end
  end
end

-- One bounded step of building set `set` (see the note at the top): the first step empties
-- the key, each step adds the available proxies of one HSCAN page of K_STATE. Returns true
-- when the set is ready.
local function ensure_set(set)
  local cursor = SETS[set]
  if cursor == 'r' then
    return true
  end
  local key = SET_KEYS[set]
  if cursor == nil then
    redis.call('DEL', key)
    cursor = '0'
  end
  local scan = redis.call('HSCAN', K_STATE, cursor, 'COUNT', BUILD_STEP)
  local fields = scan[2]
  local ids = {}
  for i = 1, #fields, 2 do
    ids[#ids + 1] = fields[i]
  end
  if #ids > 0 then
    local counts = redis.call('HMGET', K_COUNTS, unpack(ids))
    local args = {}
    for i, id in ipairs(ids) do
      local st = peek(fields[2 * i])
      local n = tonumber(counts[i]) or 0
      if usable_st(st) and (st.m == nil or n < st.m) then
        local member, score = placement(set, id, st, n)
        args[#args + 1] = score
        args[#args + 1] = member
      end
    end
    for i = 1, #args, 1000 do
      redis.call('ZADD', key, unpack(args, i, math.min(i + 999, #args)))
    end
  end
  SETS[set] = scan[1] == '0' and 'r' or scan[1]
  redis.call('HSET', K_META, 'set:' .. set, SETS[set])
  return SETS[set] == 'r'
end

-- Stamp that a selector's set was used now (rewritten at most once per USE_REFRESH_S).
local function note_use(set, now)
  local seconds = math.floor(now / 1000000)
  if USED[set] == nil or seconds - USED[set] >= USE_REFRESH_S then
    redis.call('HSET', K_META, 'used:' .. set, seconds)
  end
end

-- A released record's place on the time line: its purge time plus half a microsecond.
local function purge_score(ended, retention_us)
  return int_str(ended + retention_us) .. '.5'
end

-- Give back one lease slot of proxy `id` (at server time `now`): the lease count returned by
-- the decrement decides whether the proxy comes back into the kept sets (it was full) or only
-- moves in 'least'. When a waiter fits, the slot goes straight to it instead (hand_off), and
-- the count and the sets stay as they are.
local function free_slot(id, now)
  if WQ and hand_off(id, true, now) then
    return
  end
  local n = redis.call('HINCRBY', K_COUNTS, id, -1)
  if n <= 0 then
    redis.call('HDEL', K_COUNTS, id)
    if n < 0 then  -- no slot was taken (the proxy was deleted, or re-saved since)
      return
    end
  end
  if not (SETS.first or SETS.least or SETS.rr or SETS.latency) then
    return
  end
  local state = redis.call('HGET', K_STATE, id)
  if not state or not usable(state) then
    return
  end
  local m = tonumber(string.match(state, '"m":(%d+)'))
  local was_full = m ~= nil and n + 1 >= m
  if not was_full and not SETS.least then
    return
  end
  if was_full and n >= m then  -- still full (its max was lowered meanwhile)
    return
  end
  local st = peek(state)
  for _, set in ipairs(SET_NAMES) do
    if SETS[set] and (was_full or set == 'least') then
      local member, score = placement(set, id, st, n)
      redis.call('ZADD', SET_KEYS[set], score, member)
    end
  end
end

-- Finish an active lease: stamp when it ended (now, or its deadline if that came first: a
-- lease never outlives its deadline, and `released >= expires` then says it ended by
-- expiry), move it on the time line to its purge time and give its slot back to the proxy.
-- A record already released is left as it is. Returns the updated record JSON and whether it
-- ended by expiry.
local function end_lease(lease_id, raw, now, retention_us)
  if string.find(raw, '"released"', 1, true) then
    return raw, false
  end
  local due = tonumber(string.match(raw, '"expires":%s*"(%d+)"'))
  local ended = math.min(now, due)
  local encoded = string.sub(raw, 1, -2) .. ',"released":"' .. int_str(ended) .. '"}'
  redis.call('HSET', K_LEASES, lease_id, encoded)
  redis.call('ZADD', K_DEADLINES, purge_score(ended, retention_us), lease_id)
  free_slot(string.match(raw, '"proxy":%s*"([^"]+)"'), now)
  return encoded, due <= now
end


-- Release one lease, as release.lua, rotate.lua and release_many.lua do: idempotent, and a
-- no-op for a lease already over, so a retry reports what the first run did. Returns the
-- code ('released' in time, 'expired' past its deadline, 'noop' released before, 'missing')
-- and the lease record JSON (false when missing).
local function release_one(lease_id, now, retention_us)
  local raw = redis.call('HGET', K_LEASES, lease_id)
  if not raw then
    return 'missing', false
  end
  if not string.find(raw, '"released"', 1, true) then
    local ended, expired = end_lease(lease_id, raw, now, retention_us)
    return expired and 'expired' or 'released', ended
  end
  local rec = cjson.decode(raw)
  local expired = tonumber(rec.released) >= tonumber(rec.expires)
  return expired and 'expired' or 'noop', raw
end

-- Release at most `batch` of this pool's due time line entries: active leases whose deadline
-- has passed are ended, released records whose retention has passed are purged. Returns how
-- many leases were released and whether the batch was full (more may be due).
local function reclaim_due(now, retention_us, batch)
  local due = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', int_str(now),
                         'WITHSCORES', 'LIMIT', 0, batch)
  local purge, reclaimed = {}, 0
  for i = 1, #due, 2 do
    local lease_id = due[i]
    if tonumber(due[i + 1]) % 1 ~= 0 then
      purge[#purge + 1] = lease_id
    else
      local raw = redis.call('HGET', K_LEASES, lease_id)
      if raw then
        end_lease(lease_id, raw, now, retention_us)
        reclaimed = reclaimed + 1
      else
        redis.call('ZREM', K_DEADLINES, lease_id)
      end
    end
  end
  if #purge > 0 then
    redis.call('HDEL', K_LEASES, unpack(purge))
    redis.call('ZREM', K_DEADLINES, unpack(purge))
  end
  return reclaimed, #due == 2 * batch
end

-- The earliest active lease deadline (the first whole score on the time line), or nil when
-- no lease is active. Past a window of `lookahead` purge entries, the window's end stands in
-- for it (early is safe: the caller only looks again sooner).
local function next_deadline(lookahead)
  local window = redis.call('ZRANGE', K_DEADLINES, 0, lookahead - 1, 'WITHSCORES')
  for i = 2, #window, 2 do
    if tonumber(window[i]) % 1 == 0 or i == 2 * lookahead then
      return math.floor(tonumber(window[i]))
    end
  end
  return nil
end

-- The cleanup index's entry for this pool (KEYS of schedule.lua, another slot) is known to
-- be at or before the pool's 'sched' field, when that is set: a lease expiring no earlier
-- needs no schedule.lua call. Acquire and lease scripts pipelined with schedule.lua lower it
-- to their deadline (note_scheduled); reclaim.lua sets it to what cleanup puts back.
local function scheduled_at()
  return SCHED
end

local function note_scheduled(deadline, sched)
  if sched == nil or deadline < sched then
    redis.call('HSET', K_META, 'sched', int_str(deadline))
    return deadline
  end
  return sched
end

-- The record of a lease of proxy `id` from `now` for `duration_us`: JSON built by hand (every
-- value is a UUID or digits).
local function lease_record(id, consumer_id, now, duration_us)
  return '{"proxy":"' .. id .. '","consumer":"' .. consumer_id .. '","acquired":"'
    .. int_str(now) .. '","expires":"' .. int_str(now + duration_us) .. '"}'
end

-- Write a lease record `rec` (lease_record) and put it on the time line at its deadline.
local function write_lease(lease_id, rec, now, duration_us)
  redis.call('HSET', K_LEASES, lease_id, rec)
  redis.call('ZADD', K_DEADLINES, int_str(now + duration_us), lease_id)
end

-- Create lease `lease_id` on proxy `id` (state JSON `state`, known to be available): the
-- lease count returned by the increment decides whether the proxy is now full and leaves
-- the kept sets, or only moves in 'least'. Returns the record JSON and the new lease count.
local function start_lease(id, state, lease_id, consumer_id, now, duration_us)
  local rec = lease_record(id, consumer_id, now, duration_us)
  write_lease(lease_id, rec, now, duration_us)
  local n = redis.call('HINCRBY', K_COUNTS, id, 1)
  local m = tonumber(string.match(state, '"m":(%d+)'))
  if m ~= nil and n >= m then  -- now full: out of every kept set
    for _, set in ipairs(SET_NAMES) do
      if SETS[set] then
        local member = id
        if set == 'least' then
          member = string.match(state, '"c":"(%d+)"') .. id
        end
        redis.call('ZREM', SET_KEYS[set], member)
      end
    end
  elseif SETS.least then
    redis.call('ZADD', K_LEAST, n, string.match(state, '"c":"(%d+)"') .. id)
  end
  return rec, n
end
