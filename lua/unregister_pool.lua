-- unregister_pool.lua: remove a pool from the global registry.
-- KEYS[1] <prefix>:{<prefix>:global}:pool-ids    hash  pool id -> name
-- KEYS[2] <prefix>:{<prefix>:global}:pool-names  hash  name -> pool id
-- KEYS[3] <prefix>:{<prefix>:global}:deadlines   zset  pool id -> earliest deadline hint
-- KEYS[4] <prefix>:{<prefix>:global}:claims      hash  pool id -> cleanup claim (see due.lua)
-- ARGV[1] pool id (UUID string)
-- Returns {'ok'} | {'missing'}
local pool_id = ARGV[1]

local name = redis.call('HGET', KEYS[1], pool_id)
if not name then
  return {'missing'}
end
redis.call('HDEL', KEYS[1], pool_id)
redis.call('ZREM', KEYS[3], pool_id)
redis.call('HDEL', KEYS[4], pool_id)
if redis.call('HGET', KEYS[2], name) == pool_id then
  redis.call('HDEL', KEYS[2], name)
end
return {'ok'}
