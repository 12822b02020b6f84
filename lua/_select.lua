-- _select.lua: selector order and filter evaluation, shared by find.lua, acquire.lua and the
-- wait queue's hand-off (_wait.lua). pharox_redis/scripts.py puts it after _pool.lua and
-- _outcome.lua (whose blocked() the walk uses) in front of every pool script.
--
-- A filter is the JSON tree pharox_redis/filters.py compiles from ProxyFilters. It evaluates
-- three-valued: true, false, or nil when a Python predicate decides ("undecided"); undecided
-- candidates go back to Python in selector order.
--
-- How to add a selector. Each selector walks one sorted set of the available proxies, kept
-- in its order (once the pool has been asked for it, see _pool.lua) by every script that
-- changes a proxy, so a pick is O(log N):
--   1. pharox's SelectorStrategy names it (its value is what ARGV carries here).
--   2. pharox_redis/keys.py: add the set to PoolKeys (say its member and score there).
--   3. _pool.lua: SET_NAMES, SET_KEYS, SELECTOR_SETS, META_HEAD, and placement() (member and
--      score); if the score needs a field of the proxy, add it to codec.ProxyState
--      (pharox_redis/codec.py) and to peek().
--   4. Here, in walk(): a member that is not the bare proxy id back to the id, as for
--      least_used.
--   5. audit.lua checks every kept set through placement(); nothing to add there.
--   6. tests/storage/test_selection.py: the order against pharox's reference adapters.
local EARTH_RADIUS_KM = 6371.0

local function near(a, b)
  return math.abs(a - b) <= 1e-6
end

local function haversine_km(lat1, lon1, lat2, lon2)
  local dlat, dlon = math.rad(lat2 - lat1), math.rad(lon2 - lon1)
  local a = math.sin(dlat / 2) ^ 2
    + math.cos(math.rad(lat1)) * math.cos(math.rad(lat2)) * math.sin(dlon / 2) ^ 2
  return EARTH_RADIUS_KM * 2 * math.asin(math.sqrt(a))
end

local function geo_matches(geo, st)
  if st.lat == nil or st.lon == nil then
    return false
  end
  local lat, lon = tonumber(st.lat), tonumber(st.lon)
  if geo[3] == nil then
    return near(lat, geo[1]) and near(lon, geo[2])
  end
  return haversine_km(geo[1], geo[2], lat, lon) <= geo[3]
end

local function matches(node, st)
  if node.eq then
    for _, pair in ipairs(node.eq) do
      if st[pair[1]] ~= pair[2] then
        return false
      end
    end
  end
  if node.geo and not geo_matches(node.geo, st) then
    return false
  end
  local result = true
  if node.p then
    result = nil
  end
  if node.all then
    for _, child in ipairs(node.all) do
      local r = matches(child, st)
      if r == false then
        return false
      elseif r == nil then
        result = nil
      end
    end
  end
  if node.any then
    local any = false
    for _, child in ipairs(node.any) do
      local r = matches(child, st)
      if r == true then
        any = true
        break
      elseif r == nil then
        any = nil
      end
    end
    if any == false then
      return false
    elseif any == nil then
      result = nil
    end
  end
  if node.none then
    for _, child in ipairs(node.none) do
      local r = matches(child, st)
      if r == true then
        return false
      elseif r == nil then
        result = nil
      end
    end
  end
  return result
end

-- Walk the available proxies in selector order from position `offset` and append to `out`
-- the candidates that may match: 5 values each (id, 1 if it matches or 0 if undecided,
-- state JSON, lease count, record); the lease count is false for a match (the caller that
-- leases it learns the count from start_lease, find.lua reads it). Stops after the first
-- match, after `max_undecided` undecided candidates, or after examining `budget` proxies.
-- With a `target` domain (else nil), proxies blocked for it at `now` are skipped (see
-- blocked() in _outcome.lua). Returns the position to continue from, or -1 when the order
-- is exhausted. The selector's set must be ready (ensure_set in _pool.lua).
local function walk(out, selector, filter_json, offset, budget, max_undecided, target, now)
  local order = SET_KEYS[SELECTOR_SETS[selector]]
  local least = selector == 'least_used'
  local function candidate(member, verdict, state)
    local id = least and string.sub(member, -36) or member
    state = state or redis.call('HGET', K_STATE, id)
    out[#out + 1] = id
    out[#out + 1] = verdict and 1 or 0
    out[#out + 1] = state
    out[#out + 1] = not verdict and (tonumber(redis.call('HGET', K_COUNTS, id)) or 0)
    out[#out + 1] = redis.call('HGET', K_RECORDS, id)
  end
  if filter_json == '' and offset == 0 then
    -- Without a filter the first member is taken: one read, no count of the set (for
    -- ROUND_ROBIN the first id after the cursor, wrapping around).
    local first = {}
    local cursor = selector == 'round_robin' and redis.call('GET', K_CURSOR)
    if cursor then
      first = redis.call('ZRANGE', order, '(' .. cursor, '+', 'BYLEX', 'LIMIT', 0, 1)
    end
    if #first == 0 then
      first = redis.call('ZRANGE', order, 0, 0)
    end
    if #first == 0 then
      return -1
    end
    if not blocked(target, least and string.sub(first[1], -36) or first[1], now) then
      candidate(first[1], true)
      return 1  -- a walk continued from here finds out whether more follow
    end
  end
  local filter = nil
  if filter_json ~= '' then
    filter = cjson.decode(filter_json)
  end
  local total = redis.call('ZCARD', order)
  local start = 0
  if selector == 'round_robin' and total > 0 then
    local cursor = redis.call('GET', K_CURSOR)
    if cursor then
      start = redis.call('ZLEXCOUNT', K_RR, '-', '[' .. cursor)
    end
  end
  local undecided, examined, pos = 0, 0, offset
  -- Without a filter the first candidate is taken: read one member, not a chunk.
  local step = filter and 64 or 1
  while pos < total and examined < budget do
    local rank = (start + pos) % total
    local chunk = math.min(step, total - pos, budget - examined, total - rank)
    step = 64
    local members = redis.call('ZRANGE', order, rank, rank + chunk - 1)
    for _, member in ipairs(members) do
      examined, pos = examined + 1, pos + 1
      local id = least and string.sub(member, -36) or member
      local state, verdict = nil, false
      if not blocked(target, id, now) then  -- a blocked candidate costs one ZSCORE
        state, verdict = redis.call('HGET', K_STATE, id), true
        if filter then
          verdict = matches(filter, cjson.decode(state))
        end
      end
      if verdict ~= false then
        candidate(member, verdict, state)
        if not verdict then
          undecided = undecided + 1
        end
        if verdict or undecided >= max_undecided then
          return pos < total and pos or -1
        end
      end
    end
    if #members < chunk then
      break
    end
  end
  return pos < total and pos or -1
end
