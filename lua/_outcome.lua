-- _outcome.lua: what an outcome reported with a release does to its proxy (see
-- pharox_redis/outcome.py), and the bounded step that ends cool-downs and blocks.
-- pharox_redis/scripts.py puts it after _pool.lua in front of every pool script.
--
-- State JSON fields (codec.ProxyState): 'l' the latency average LOWEST_LATENCY orders by
-- (whole ms), 'x' consecutive failures (absent: 0), 'k' the end of the proxy's cool-down in
-- microseconds (absent: none). A proxy with 'k' is not usable (usable() in _pool.lua): in no
-- availability set, and K_COOLING holds it scored at the same end. A block for a domain is
-- only K_BLOCKED's member '<domain> <proxy id>' scored at its end: the walk of an acquire with
-- that target skips the proxy (blocked() below).
--
-- The meta field 'cool' is a lower bound of every end in K_COOLING and K_BLOCKED (absent when
-- both are empty), so a pool that never had an outcome pays no call for them.
local RESTORE_STEP = 16  -- ended cool-downs and expired blocks handled per call

local function copy_state(st)
  local out = {}
  for key, value in pairs(st) do
    out[key] = value
  end
  return out
end

-- Lower the 'cool' field to `ends` (microseconds) when it is later or absent.
local function note_cool(ends)
  if COOL == nil or ends < COOL then
    COOL = ends
    redis.call('HSET', K_META, 'cool', int_str(ends))
  end
end

-- Write proxy `id`'s new state table `st` (its old proxy `old`, see load_proxy) and re-index.
local function store_state(id, old, st)
  redis.call('HSET', K_STATE, id, cjson.encode(st))
  reindex(id, old, {st = st, n = old.n})
end

-- Apply outcome `o` to proxy `id` at `now`: o.kind 'ok' | 'failed' | 'blocked', o.value the
-- latency (ms) or the domain, o.alpha, o.base_us, o.max_us, o.limit (0: none), o.block_us
-- (OutcomePolicy.args). A proxy deleted since is left alone.
local function apply_outcome(id, o, now)
  local old = load_proxy(id)
  if not old then
    return
  end
  if o.kind == 'blocked' then
    local ends = now + o.block_us
    redis.call('ZADD', K_BLOCKED, int_str(ends), o.value .. ' ' .. id)
    note_cool(ends)
    return
  end
  local st = copy_state(old.st)
  if o.kind == 'ok' then
    local sample = tonumber(o.value)
    local average = sample
    if st.l ~= nil then
      average = o.alpha * sample + (1 - o.alpha) * st.l
    end
    st.l, st.t, st.x, st.k = math.floor(average + 0.5), int_str(now), nil, nil
    if old.st.k then
      redis.call('ZREM', K_COOLING, id)
    end
  else
    local failures = (st.x or 0) + 1
    st.x = failures
    if o.limit > 0 and failures >= o.limit then
      st.s, st.k = 'inactive', nil
      if old.st.k then
        redis.call('ZREM', K_COOLING, id)
      end
    else
      local ends = now + math.min(o.base_us * 2 ^ (failures - 1), o.max_us)
      if old.st.k and tonumber(old.st.k) > ends then
        ends = tonumber(old.st.k)
      end
      st.k = int_str(ends)
      redis.call('ZADD', K_COOLING, st.k, id)
      note_cool(ends)
    end
  end
  store_state(id, old, st)
end

-- Apply the outcome of lease record `raw` (lease `lease_id`) unless one was applied before
-- (a re-sent release): the record then carries "o". Returns the record JSON.
local function record_outcome(lease_id, raw, o, now)
  if string.find(raw, '"o":"', 1, true) then
    return raw
  end
  local marked = string.sub(raw, 1, -2) .. ',"o":"' .. o.kind .. '"}'
  redis.call('HSET', K_LEASES, lease_id, marked)
  apply_outcome(string.match(raw, '"proxy":%s*"([^"]+)"'), o, now)
  return marked
end

-- Release lease `lease_id` as release_one (_pool.lua) does, with outcome `o` (or nil) applied
-- first, once per lease: a proxy the outcome cools down, blocks or makes INACTIVE is out of
-- the sets before the release frees its slot, so the slot's hand-off (_wait.lua) sees it as
-- it is now. Returns release_one's code and record.
local function release_reporting(lease_id, o, now, retention_us)
  if o then
    local raw = redis.call('HGET', K_LEASES, lease_id)
    if raw then
      record_outcome(lease_id, raw, o, now)
    end
  end
  return release_one(lease_id, now, retention_us)
end

-- The outcome in `argv` from position i (kind, value, alpha, base_us, max_us, limit,
-- block_us), or nil when argv[i] is absent or ''.
local function outcome_from(argv, i)
  if argv[i] == nil or argv[i] == '' then
    return nil
  end
  return {kind = argv[i], value = argv[i + 1], alpha = tonumber(argv[i + 2]),
          base_us = tonumber(argv[i + 3]), max_us = tonumber(argv[i + 4]),
          limit = tonumber(argv[i + 5]), block_us = tonumber(argv[i + 6])}
end

-- Split a string at spaces (release_many.lua's entries and policy).
local function words(text)
  local out = {}
  for word in string.gmatch(text, '%S+') do
    out[#out + 1] = word
  end
  return out
end

-- Carry the outcome fields of proxy `id` from its old state `old_st` to the new state `st`
-- that save_proxies.lua or health.lua writes: kept, unless the proxy is made active again
-- (from another status), which starts it afresh (no failures, no cool-down).
local function carry_outcomes(id, old_st, st)
  if old_st.s ~= 'active' and st.s == 'active' then
    st.x, st.k = nil, nil
    if old_st.k then
      redis.call('ZREM', K_COOLING, id)
    end
    return
  end
  st.x, st.k = old_st.x, old_st.k
end

-- Whether proxy `id` is blocked for `target` (a domain, or nil for none) at `now`.
local function blocked(target, id, now)
  if target == nil or COOL == nil then
    return false
  end
  local ends = redis.call('ZSCORE', K_BLOCKED, target .. ' ' .. id)
  return ends ~= false and tonumber(ends) > now
end

-- One bounded step, once the 'cool' field says something may have ended: put back up to
-- RESTORE_STEP proxies whose cool-down ended (they are tried again) and drop as many expired
-- blocks, then move 'cool' to the earliest end left.
local function restore_due(now)
  if COOL == nil or COOL > now then
    return
  end
  local due = redis.call('ZRANGEBYSCORE', K_COOLING, '-inf', int_str(now), 'LIMIT', 0, RESTORE_STEP)
  for _, id in ipairs(due) do
    redis.call('ZREM', K_COOLING, id)
    local old = load_proxy(id)
    if old and old.st.k then
      local st = copy_state(old.st)
      st.k = nil
      store_state(id, old, st)
    end
  end
  local expired = redis.call('ZRANGEBYSCORE', K_BLOCKED, '-inf', int_str(now), 'LIMIT', 0,
                             RESTORE_STEP)
  if #expired > 0 then
    redis.call('ZREM', K_BLOCKED, unpack(expired))
  end
  local next_end = nil
  for _, key in ipairs({K_COOLING, K_BLOCKED}) do
    local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    if #first > 0 and (next_end == nil or tonumber(first[2]) < next_end) then
      next_end = tonumber(first[2])
    end
  end
  COOL = next_end
  if next_end then
    redis.call('HSET', K_META, 'cool', int_str(next_end))
  else
    redis.call('HDEL', K_META, 'cool')
  end
end
