-- find.lua: walk the pool's available proxies in selector order and return the first that
-- matches the filter. Parts of a filter that only Python can decide (predicates) evaluate to
-- "unknown"; such candidates are returned, in order, for the caller to test. Bounded: at
-- most ARGV[5] candidates are examined per call, and the caller continues from the offset
-- returned. ROUND_ROBIN advances the cursor when it returns a decided match first.
-- KEYS[1..12] the pool block (see _pool.lua)
-- ARGV[1] pool name the caller expects (string)
-- ARGV[2] selector: first_available | least_used | round_robin | lowest_latency
-- ARGV[3] filter JSON from pharox_redis/filters.py, or '' for none
-- ARGV[4] offset: position in selector order to start at (integer >= 0)
-- ARGV[5] scan budget: most candidates examined by this call (integer >= 1)
-- ARGV[6] most undecided candidates returned (integer >= 1)
-- Returns {'ok', next offset (-1 when the order is exhausted), item...} | {'nopool'}
--   | {'stale', pool name}; an item is 5 values: proxy id, 1 if it matches (0 if a Python
--   predicate decides), state JSON, lease count, record. Items stop at the first match.
local expected_name, selector, filter_json = ARGV[1], ARGV[2], ARGV[3]
local offset, budget, max_undecided = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local EARTH_RADIUS_KM = 6371.0

local name = redis.call('HGET', K_META, 'name')
if not name then
  return {'nopool'}
end
if name ~= expected_name then
  return {'stale', name}
end

-- Three-valued match: true, false, or nil when a Python predicate decides.
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

local order = ({first_available = K_FIRST, least_used = K_LEAST,
                round_robin = K_RR, lowest_latency = K_LATENCY})[selector]
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

local out, undecided, examined, pos = {'ok', -1}, 0, 0, offset
while pos < total and examined < budget do
  local rank = (start + pos) % total
  local chunk = math.min(64, total - pos, budget - examined, total - rank)
  local members = redis.call('ZRANGE', order, rank, rank + chunk - 1)
  for _, member in ipairs(members) do
    examined, pos = examined + 1, pos + 1
    local id = member
    if selector == 'least_used' then
      id = string.sub(member, -36)
    end
    local state = redis.call('HGET', K_STATE, id)
    local verdict = true
    if filter then
      verdict = matches(filter, cjson.decode(state))
    end
    if verdict ~= false then
      out[#out + 1] = id
      out[#out + 1] = verdict and 1 or 0
      out[#out + 1] = state
      out[#out + 1] = tonumber(redis.call('HGET', K_COUNTS, id)) or 0
      out[#out + 1] = redis.call('HGET', K_RECORDS, id)
      if verdict then
        if selector == 'round_robin' and undecided == 0 then
          redis.call('SET', K_CURSOR, id)
        end
        out[2] = pos < total and pos or -1
        return out
      end
      undecided = undecided + 1
      if undecided >= max_undecided then
        out[2] = pos < total and pos or -1
        return out
      end
    end
  end
  if #members < chunk then
    break
  end
end
out[2] = pos < total and pos or -1
return out
