-- delete_proxy.lua: remove a proxy, its indexes and its health history. Its active leases
-- stay until released or reclaimed, and then change nothing.
-- KEYS the pool's keys (see _pool.lua), then <prefix>:{p:<pool>}:health:<proxy id>  zset of health records
-- ARGV[1] proxy id (UUID string)
-- Returns (see _pool.lua) {'ok' | 'missing', name, false} | 'nopool'
local id = ARGV[1]

local name, refused = pool_named('')
if not name then
  return refused
end
local old = load_proxy(id)
if not old then
  return answer('missing', name, false)
end
reindex(id, old, nil)
redis.call('HDEL', K_STATE, id)
redis.call('HDEL', K_RECORDS, id)
redis.call('HDEL', K_COUNTS, id)
redis.call('DEL', KEYS[#KEYS])
return answer('ok', name, false)
