-- lease.lua: lease the first of the given proxies that is still available (compare-and-
-- lease). Used by create_lease (one proxy) and by acquires whose candidates a Python
-- predicate chose (several, in selector order, so a candidate another worker took in the
-- meantime costs no extra round trip). Like acquire.lua it first handles a bounded batch of
-- the pool's due time line entries (expired leases, records past their retention).
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects, or '' to accept any (string)
-- ARGV[2] proxy id (UUID string)
-- ARGV[3] lease id (UUID string chosen by the client; a retry with the same id returns the
--         lease already made instead of a second one)
-- ARGV[4] consumer id (UUID string)
-- ARGV[5] lease duration in microseconds (integer > 0)
-- ARGV[6] retention of released lease records in microseconds (integer >= 0)
-- ARGV[7] '1' to make the leased proxy the ROUND_ROBIN cursor, else '0'
-- ARGV[8] '1' to have the pool counters in the reply, else '0'
-- ARGV[9..] more proxy ids (UUID strings), tried in order after ARGV[2]
-- Always pipelined before schedule.lua, so the pool's 'sched' field may be lowered.
-- Returns (see _pool.lua) {code, name, counters, ...}: 'ok' | 'exists' with lease JSON and
--   the proxy's lease count; 'unavailable' when every proxy given is full or not active,
--   'missing' when none of them is in the pool (no fields); | 'nopool' | 'stale'
local expected_name, proxy_id, lease_id = ARGV[1], ARGV[2], ARGV[3]
local consumer_id, duration_us, retention_us = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local move_cursor, with_counters = ARGV[7] == '1', ARGV[8] == '1'
local RECLAIM_BATCH = 16  -- due time line entries (expired leases, old records) handled first

local name, refused = pool_named(expected_name)
if not name then
  return refused
end

local function reply(code, rec, count)
  if count == nil then
    local id = string.match(rec, '"proxy":%s*"([^"]+)"')
    count = tonumber(redis.call('HGET', K_COUNTS, id)) or 0
  end
  return answer(code, name, with_counters, {rec, count})
end

local existing = redis.call('HGET', K_LEASES, lease_id)
if existing then
  return reply('exists', existing)
end
local now = now_us()
reclaim_due(now, retention_us, RECLAIM_BATCH)
local state, found = nil, false
for i = 2, #ARGV do
  if i == 2 or i >= 9 then
    local raw = redis.call('HGET', K_STATE, ARGV[i])
    if raw then
      found = true
      local st = peek(raw)
      local n = tonumber(redis.call('HGET', K_COUNTS, ARGV[i])) or 0
      if usable_st(st) and (st.m == nil or n < st.m) then
        proxy_id, state = ARGV[i], raw
        break
      end
    end
  end
end
if not state then
  return answer(found and 'unavailable' or 'missing', name, with_counters)
end

local rec, count = start_lease(proxy_id, state, lease_id, consumer_id, now, duration_us)
note_scheduled(now + duration_us, scheduled_at())  -- schedule.lua follows in the pipeline
if move_cursor then
  redis.call('SET', K_CURSOR, proxy_id)
end
return reply('ok', rec, count)
