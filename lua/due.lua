-- due.lua: the global deadline entries whose time has come on the server clock.
-- KEYS[1] <prefix>:{global}:deadlines  zset  "<pool id>:<lease id>" -> expires_at_us
-- ARGV[1] most entries returned (integer >= 1)
-- Returns the members, earliest first
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now),
                  'LIMIT', 0, tonumber(ARGV[1]))
