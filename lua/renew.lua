-- renew.lua: extend an active lease to expire `duration` after now on the server clock. A
-- lease whose deadline has passed is lost: it is reclaimed here if no one has done so yet.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] lease id (UUID string)
-- ARGV[2] new duration from now in microseconds (integer > 0)
-- ARGV[3] retention of released lease records in microseconds (integer >= 0)
-- Returns (see _pool.lua) {'ok' | 'lost', name, false, lease JSON} | 'missing' | 'nopool'
local lease_id, duration_us, retention_us = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

local name, refused = pool_named('')
if not name then
  return refused
end
local raw = redis.call('HGET', K_LEASES, lease_id)
if not raw then
  return answer('missing', name, false)
end
if string.find(raw, '"released"', 1, true) then
  return answer('lost', name, false, {raw})
end
local now = now_us()
if tonumber(string.match(raw, '"expires":%s*"(%d+)"')) <= now then
  return answer('lost', name, false, {(end_lease(lease_id, raw, now, retention_us))})
end
local expires = int_str(now + duration_us)
local encoded = string.gsub(raw, '"expires":%s*"%d+"', '"expires":"' .. expires .. '"', 1)
redis.call('HSET', K_LEASES, lease_id, encoded)
redis.call('ZADD', K_DEADLINES, expires, lease_id)
return answer('ok', name, false, {encoded})
