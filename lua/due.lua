-- due.lua: hand out the pools whose deadline hint has come, after putting back the hints of
-- the pools the caller has just reclaimed. A pool handed out is claimed: its hint moves
-- `grace` into the future, so if the caller dies before putting it back, cleanup visits the
-- pool again then.
-- KEYS[1] <prefix>:{<prefix>:global}:deadlines  zset  pool id -> earliest deadline hint (us)
-- KEYS[2] <prefix>:{<prefix>:global}:claims     hash  pool id -> "<claim> [<earliest deadline scheduled since>]"
-- ARGV[1] most pools handed out (integer >= 1)
-- ARGV[2] grace in microseconds (integer > 0)
-- ARGV[3..] triples to put back: pool id, the claim this call's caller got, the pool's
--   earliest remaining deadline ('' for none). A hint a lease moved earlier since the claim
--   is kept when it is earlier, and so is a deadline schedule.lua left in the claim (a lease
--   made after the caller's reclaim).
-- Returns flat pairs (pool id, claim) of the pools handed out, earliest first
local batch, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local key, claims = KEYS[1], KEYS[2]

for i = 3, #ARGV, 3 do
  local pool, claim, nxt = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local held = redis.call('HGET', claims, pool)
  if held then
    local holder, pending = string.match(held, '^(%d+) ?(%d*)$')
    if holder == claim then
      redis.call('HDEL', claims, pool)
      if pending ~= '' and (nxt == '' or tonumber(pending) < tonumber(nxt)) then
        nxt = pending
      end
    end
  end
  local current = tonumber(redis.call('ZSCORE', key, pool))
  if current == nil or current == tonumber(claim) then
    if nxt == '' then
      if current then
        redis.call('ZREM', key, pool)
      end
    else
      redis.call('ZADD', key, nxt, pool)
    end
  elseif nxt ~= '' and tonumber(nxt) < current then
    redis.call('ZADD', key, nxt, pool)
  end
end

local now = now_us()
local claim = int_str(now + grace)
local due = redis.call('ZRANGEBYSCORE', key, '-inf', int_str(now),
                       'LIMIT', 0, batch)
local out = {}
for _, pool in ipairs(due) do
  redis.call('ZADD', key, claim, pool)
  redis.call('HSET', claims, pool, claim)
  out[#out + 1] = pool
  out[#out + 1] = claim
end
return out
