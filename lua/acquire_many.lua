-- acquire_many.lua: lease up to n proxies of one pool in one call, each lease bounded by its
-- proxy's max concurrency. Reclaims this pool's expired leases (a bounded batch) first.
-- Three modes:
--   'walk': walk the available proxies in selector order (see _select.lua), plan the leases,
--     then make them. When the scan budget ran out before the plan was complete, nothing is
--     leased and the matches found come back as 'scan' for the caller to go on with 'ids'.
--   'scan': walk and return the candidates (matching or undecided) without leasing: for
--     filters with a Python predicate, or to go on where a walk stopped.
--   'ids': lease from the given proxies, in the given order, those still available
--     (compare-and-lease, the counterpart of lease.lua).
-- The plan: with `distinct`, each proxy takes one lease; without, a proxy takes as many as it
-- has free slots (max concurrency less current leases; unlimited without a max), in
-- selector order. With `all_or_nothing`, nothing is leased unless the plan holds n leases.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects (string)
-- ARGV[2] selector: first_available | least_used | round_robin | lowest_latency
-- ARGV[3] filter JSON from pharox_redis/filters.py, or '' for none
-- ARGV[4] offset: position in selector order to start at (integer >= 0)
-- ARGV[5] scan budget: most candidates examined by this call (integer >= 1)
-- ARGV[6] most undecided candidates returned (integer >= 1)
-- ARGV[7] consumer id (UUID string)
-- ARGV[8] lease duration in microseconds (integer > 0)
-- ARGV[9] retention of released lease records in microseconds (integer >= 0)
-- ARGV[10] most expired leases reclaimed by this call (integer >= 0)
-- ARGV[11] '1' when schedule.lua follows in the same pipeline, else '0' (see acquire.lua)
-- ARGV[12] mode: walk | scan | ids
-- ARGV[13] '1' for all or nothing, '0' for as many as there are
-- ARGV[14] '1' when each proxy may take only one lease of the call, else '0'
-- ARGV[15] n: number of lease ids that follow (integer >= 1)
-- ARGV[16 .. 15+n] lease ids (UUID strings chosen by the client, used in order; a retry
--   with the same ids returns the leases already made instead of new ones)
-- ARGV[16+n ..] proxy ids (UUID strings; mode 'ids' only)
-- Returns (see _pool.lua) {code, name, counters, covered, next offset, leases made, ...}:
--   covered as in acquire.lua; then by code:
--   'ok' | 'exists': next offset -1, m, then for each lease made (m of them, in lease id
--     order): lease JSON, proxy id, state JSON, lease count, record (state and record false
--     when the proxy has been deleted since)
--   'scan': next offset (-1 when the order is exhausted), 0, candidate items (see walk)
--   or {'schedule', name, false}: nothing was done; send again with schedule.lua pipelined
--   or {'build', name, false}: nothing was done: the selector's set is being built (see
--   ensure_set in _pool.lua); send again | 'nopool' | 'stale'
local expected_name, selector, filter_json = ARGV[1], ARGV[2], ARGV[3]
local offset, budget, max_undecided = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local consumer_id, duration_us = ARGV[7], tonumber(ARGV[8])
local retention_us, reclaim_batch = tonumber(ARGV[9]), tonumber(ARGV[10])
local with_schedule, mode = ARGV[11] == '1', ARGV[12]
local all_or_nothing, distinct = ARGV[13] == '1', ARGV[14] == '1'
local n = tonumber(ARGV[15])
local FIRST_LEASE, FIRST_PROXY = 16, 16 + n

local name, refused = pool_named(expected_name)
if not name then
  return refused
end

local sched = scheduled_at()

local function reply(code, next_offset, made, items)
  local out = answer(code, name, true, {sched and 1 or 0, next_offset, made})
  for _, value in ipairs(items) do
    out[#out + 1] = value
  end
  return out
end

-- A retry: the first run made its leases, with the first ids, or none at all.
if redis.call('HEXISTS', K_LEASES, ARGV[FIRST_LEASE]) == 1 then
  local items, made = {}, 0
  for i = FIRST_LEASE, FIRST_PROXY - 1 do
    local rec = redis.call('HGET', K_LEASES, ARGV[i])
    if not rec then
      break
    end
    local id = cjson.decode(rec).proxy
    made = made + 1
    items[#items + 1] = rec
    items[#items + 1] = id
    items[#items + 1] = redis.call('HGET', K_STATE, id)
    items[#items + 1] = tonumber(redis.call('HGET', K_COUNTS, id)) or 0
    items[#items + 1] = redis.call('HGET', K_RECORDS, id)
  end
  return reply('exists', -1, made, items)
end

local now = now_us()
if mode ~= 'scan' and not with_schedule and (sched == nil or sched > now + duration_us) then
  return answer('schedule', name, false)
end
if mode ~= 'ids' then
  local set = SELECTOR_SETS[selector]
  if not ensure_set(set) then
    return answer('build', name, false)
  end
  note_use(set, now)
end
if reclaim_batch > 0 then
  reclaim_due(now, retention_us, reclaim_batch)
end
restore_due(now)  -- proxies whose cool-down ended (_outcome.lua)

-- How many leases of this call a proxy (loaded as p) may take.
local function slots(p)
  if distinct then
    return 1
  end
  if p.st.m == nil then
    return n
  end
  return p.st.m - p.n
end

-- The plan: {id, state JSON, p, record, leases to take}, in order, at most n leases in all.
local plan, planned = {}, 0
local function add(id, state, p, record)
  if planned < n and available(p) then
    local take = math.min(slots(p), n - planned)
    plan[#plan + 1] = {id, state, p, record, take}
    planned = planned + take
  end
end

local next_offset, found = -1, {}
if mode == 'ids' then
  for i = FIRST_PROXY, #ARGV do
    local id = ARGV[i]
    local state = redis.call('HGET', K_STATE, id)
    if state then
      add(id, state, {st = cjson.decode(state), n = tonumber(redis.call('HGET', K_COUNTS, id)) or 0},
          redis.call('HGET', K_RECORDS, id))
    end
  end
else
  -- Walk on from where each match was found, so the order is read once; nothing is leased
  -- while walking, so positions stay put.
  local pos, undecided, decided = offset, 0, 0
  while pos >= 0 and pos - offset < budget do
    local items = {}
    pos = walk(items, selector, filter_json, pos, budget - (pos - offset), max_undecided - undecided)
    for i = 1, #items, 5 do
      if items[i + 1] == 1 then  -- walk leaves a match's lease count to the caller
        items[i + 3] = tonumber(redis.call('HGET', K_COUNTS, items[i])) or 0
      end
      found[#found + 1] = items[i]
      found[#found + 1] = items[i + 1]
      found[#found + 1] = items[i + 2]
      found[#found + 1] = items[i + 3]
      found[#found + 1] = items[i + 4]
      if items[i + 1] == 1 then
        decided = decided + 1
        add(items[i], items[i + 2], {st = cjson.decode(items[i + 2]), n = items[i + 3]},
            items[i + 4])
      else
        undecided = undecided + 1
      end
    end
    if #items == 0 or planned >= n or (mode == 'scan' and decided >= n)
        or undecided >= max_undecided then
      break
    end
  end
  next_offset = pos
  if mode == 'scan' or (planned < n and pos >= 0) then
    return reply('scan', next_offset, 0, found)
  end
end

if planned == 0 or (all_or_nothing and planned < n) then
  return reply('ok', -1, 0, {})
end
local items, made, last = {}, 0, nil
for _, pick in ipairs(plan) do
  local id, state, p, record, take = pick[1], pick[2], pick[3], pick[4], pick[5]
  for _ = 1, take do
    local rec, count = start_lease(id, state, ARGV[FIRST_LEASE + made], consumer_id, now,
                                   duration_us)
    made = made + 1
    items[#items + 1] = rec
    items[#items + 1] = id
    items[#items + 1] = state
    items[#items + 1] = count
    items[#items + 1] = record
  end
  last = id
end
if with_schedule then
  sched = note_scheduled(now + duration_us, sched)
end
if selector == 'round_robin' then
  redis.call('SET', K_CURSOR, last)
end
return reply('ok', -1, made, items)
