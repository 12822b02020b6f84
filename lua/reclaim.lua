-- reclaim.lua: release this pool's expired leases (deadline <= server time), a bounded batch.
-- KEYS[1..12] the pool block (see _pool.lua)
-- ARGV[1] retention of released lease records in microseconds (integer >= 0)
-- ARGV[2] batch size: most leases reclaimed by this call (integer > 0)
-- ARGV[3..] lease ids the caller found due in the global deadline index (hints)
-- Returns {reclaimed, more, pending...}: reclaimed count; more = 1 when the batch was full;
--   pending = flat pairs (lease id, expires_us) of hinted leases still active and not yet due,
--   so the caller can put them back in the global index.
local retention_us, batch = tonumber(ARGV[1]), tonumber(ARGV[2])

if redis.call('EXISTS', K_META) == 0 then
  return {0, 0}
end
local now = now_us()
local due = redis.call('ZRANGEBYSCORE', K_DEADLINES, '-inf', int_str(now), 'LIMIT', 0, batch)
for _, lease_id in ipairs(due) do
  redis.call('ZREM', K_DEADLINES, lease_id)
  local raw = redis.call('HGET', K_LEASES, lease_id)
  if raw then
    end_lease(lease_id, raw, now, retention_us)
  end
end
purge_history(now)

local out = {#due, #due == batch and 1 or 0}
for i = 3, #ARGV do
  local deadline = redis.call('ZSCORE', K_DEADLINES, ARGV[i])
  if deadline then
    out[#out + 1] = ARGV[i]
    out[#out + 1] = deadline
  end
end
return out
