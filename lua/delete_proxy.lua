-- delete_proxy.lua: remove a proxy, its indexes and its health history. Its active leases
-- stay until released or reclaimed, and then change nothing.
-- KEYS[1..12] the pool block (see _pool.lua)
-- KEYS[13] <prefix>:{p:<pool>}:health:<proxy id>  zset of health records
-- ARGV[1] proxy id (UUID string)
-- Returns {'ok'} | {'missing'}
local id = ARGV[1]

local old = load_proxy(id)
if not old then
  return {'missing'}
end
reindex(id, old, nil)
redis.call('HDEL', K_STATE, id)
redis.call('HDEL', K_RECORDS, id)
redis.call('HDEL', K_COUNTS, id)
redis.call('DEL', KEYS[13])
return {'ok'}
