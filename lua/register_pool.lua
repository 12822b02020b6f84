-- register_pool.lua: record a pool's id and name in the global registry; a rename frees the
-- old name. Refuses a name that another pool holds, writing nothing.
-- KEYS[1] <prefix>:{<prefix>:global}:pool-ids    hash  pool id -> name
-- KEYS[2] <prefix>:{<prefix>:global}:pool-names  hash  name -> pool id
-- ARGV[1] pool id (UUID string)
-- ARGV[2] pool name (string)
-- Returns {'ok'} | {'conflict', id of the pool holding the name}
local pool_id, name = ARGV[1], ARGV[2]

local owner = redis.call('HGET', KEYS[2], name)
if owner and owner ~= pool_id then
  return {'conflict', owner}
end
local old_name = redis.call('HGET', KEYS[1], pool_id)
if old_name and old_name ~= name and redis.call('HGET', KEYS[2], old_name) == pool_id then
  redis.call('HDEL', KEYS[2], old_name)
end
redis.call('HSET', KEYS[1], pool_id, name)
redis.call('HSET', KEYS[2], name, pool_id)
return {'ok'}
