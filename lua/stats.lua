-- stats.lua: the pool's counters (derived, see counters() in _pool.lua), read atomically.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects (string)
-- Returns (see _pool.lua) {'ok', name, counters} | 'nopool' | 'stale'
local name, refused = pool_named(ARGV[1])
if not name then
  return refused
end
return answer('ok', name, true)
