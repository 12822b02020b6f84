-- schedule.lua: make sure cleanup visits a pool by the time a new lease of it expires. The
-- global index holds one entry per pool with active leases: the earliest deadline it may
-- have (a hint: the pool's own deadlines decide). An entry only ever moves earlier here.
-- Sent in the same pipeline as the lease, after it, so the hint is never earlier than the
-- lease's real deadline by more than the time between the two calls.
-- KEYS[1] <prefix>:{global}:deadlines  zset  pool id -> earliest deadline hint (us)
-- ARGV[1] pool id (UUID string)
-- ARGV[2] lease duration in microseconds (integer > 0)
-- Returns 1
local t = redis.call('TIME')
local due = tonumber(t[1]) * 1000000 + tonumber(t[2]) + tonumber(ARGV[2])
local current = tonumber(redis.call('ZSCORE', KEYS[1], ARGV[1]))
if current == nil or due < current then
  redis.call('ZADD', KEYS[1], string.format('%.0f', due), ARGV[1])
end
return 1
