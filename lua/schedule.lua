-- schedule.lua: note a lease in the global deadline index, which lets cleanup find expired
-- leases without visiting every pool. The entry is a hint: the pool's own deadlines decide.
-- Sent in the same pipeline right after lease.lua, so its server time is at or after the
-- lease's and the hint is never earlier than the real deadline.
-- KEYS[1] <prefix>:{global}:deadlines  zset  "<pool id>:<lease id>" -> expires_at_us
-- ARGV[1] member "<pool id>:<lease id>"
-- ARGV[2] lease duration in microseconds (integer > 0)
-- Returns 1
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[1])
return 1
