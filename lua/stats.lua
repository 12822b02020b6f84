-- stats.lua: the pool's counters (derived, see counters() in _pool.lua), read atomically, and
-- how many proxies are in a cool-down and how many blocks for a domain are in force (see
-- _outcome.lua).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects (string)
-- Returns (see _pool.lua) {'ok', name, counters, cooling, blocked}: cooling = proxies in a
--   cool-down (out of every availability set; one whose cool-down has just ended counts
--   until an acquire puts it back), blocked = ('<domain> <proxy id>') blocks not yet ended
--   | 'nopool' | 'stale'
local name, refused = pool_named(ARGV[1])
if not name then
  return refused
end
local cooling, blocked = 0, 0
if COOL ~= nil then  -- else neither key exists (see _outcome.lua)
  cooling = redis.call('ZCARD', K_COOLING)
  blocked = redis.call('ZCOUNT', K_BLOCKED, '(' .. int_str(now_us()), '+inf')
end
return answer('ok', name, true, {cooling, blocked})
