-- find.lua: walk the pool's available proxies in selector order and return the first that
-- matches the filter, after any undecided candidates met before it (see _select.lua).
-- Bounded: at most ARGV[5] candidates are examined per call; the caller continues from the
-- offset returned. ROUND_ROBIN moves the cursor when the first candidate is a match.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects (string)
-- ARGV[2] selector: first_available | least_used | round_robin | lowest_latency
-- ARGV[3] filter JSON from pharox_redis/filters.py, or '' for none
-- ARGV[4] offset: position in selector order to start at (integer >= 0)
-- ARGV[5] scan budget: most candidates examined by this call (integer >= 1)
-- ARGV[6] most undecided candidates returned (integer >= 1)
-- Returns (see _pool.lua) {'ok', name, false, next offset (-1 when the order is exhausted),
--   item...} | {'build', name, false} (the selector's set is being built, one bounded step
--   per call: send again) | 'nopool' | 'stale'; an item is 5 values (see walk in
--   _select.lua; here a match has its lease count too).
local expected_name, selector, filter_json = ARGV[1], ARGV[2], ARGV[3]
local offset, budget, max_undecided = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

local name, refused = pool_named(expected_name)
if not name then
  return refused
end
local now = now_us()
restore_due(now)  -- proxies whose cool-down ended (_outcome.lua)
local set = SELECTOR_SETS[selector]
if not ensure_set(set) then
  return answer('build', name, false)
end
local out = answer('ok', name, false, {-1})
out[4] = walk(out, selector, filter_json, offset, budget, max_undecided)
for i = 5, #out, 5 do
  if out[i + 1] == 1 then
    out[i + 3] = tonumber(redis.call('HGET', K_COUNTS, out[i])) or 0
  end
end
if selector == 'round_robin' and out[6] == 1 then
  redis.call('SET', K_CURSOR, out[5])
end
note_use(set, now)
return out
