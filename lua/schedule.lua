-- schedule.lua: make sure cleanup visits a pool by the time a new lease of it expires. The
-- global index holds one entry per pool with active leases: the earliest deadline it may
-- have (a hint: the pool's own deadlines decide). An entry only ever moves earlier here.
-- Sent in the same pipeline as the lease, after it, so the hint is later than the lease's
-- real deadline by at most the time between the two calls.
-- While a cleaner holds the pool (due.lua), the entry is its claim and its put-back would
-- overwrite what this call writes, so the deadline is also left in the claim for the
-- put-back to keep.
-- KEYS[1] <prefix>:{<prefix>:global}:deadlines  zset  pool id -> earliest deadline hint (us)
-- KEYS[2] <prefix>:{<prefix>:global}:claims     hash  pool id -> "<claim> [<earliest deadline scheduled since>]"
-- ARGV[1] pool id (UUID string)
-- ARGV[2] lease duration in microseconds (integer > 0)
-- Returns 1
local pool = ARGV[1]
local due = now_us() + tonumber(ARGV[2])
local current = tonumber(redis.call('ZSCORE', KEYS[1], pool))
if current == nil or due < current then
  redis.call('ZADD', KEYS[1], int_str(due), pool)
end
local held = redis.call('HGET', KEYS[2], pool)
if held then
  local claim, pending = string.match(held, '^(%d+) ?(%d*)$')
  if pending == '' or due < tonumber(pending) then
    redis.call('HSET', KEYS[2], pool, claim .. ' ' .. int_str(due))
  end
end
return 1
