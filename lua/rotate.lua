-- rotate.lua: release a lease and acquire the next one in the same pool, in one call: the
-- release of release.lua, then the acquire of acquire.lua (reclaim a bounded batch of expired
-- leases, walk the available proxies in selector order, lease the first match), atomically.
-- The next proxy is the one an acquire would pick right after the release: with
-- ROUND_ROBIN the next in rotation, with the other selectors possibly the proxy just given
-- back. Candidates a Python predicate must decide come back instead (code 'scan'), for the
-- caller to test and lease with lease.lua, as for acquire.lua; the release is done either way.
-- A held lease already over (released, expired or reclaimed) is reported as release.lua
-- reports it, and the acquire still happens.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] pool name the caller expects, or '' to accept any (string)
-- ARGV[2] selector: first_available | least_used | round_robin | lowest_latency
-- ARGV[3] filter JSON from pharox_redis/filters.py, or '' for none
-- ARGV[4] scan budget: most candidates examined by this call (integer >= 1)
-- ARGV[5] most undecided candidates returned (integer >= 1)
-- ARGV[6] id of the lease to release (UUID string)
-- ARGV[7] id of the new lease (UUID string chosen by the client; a retry with the same id
--         returns the lease already made, and the release is not done twice)
-- ARGV[8] consumer id of the new lease (UUID string)
-- ARGV[9] lease duration in microseconds (integer > 0)
-- ARGV[10] retention of released lease records in microseconds (integer >= 0)
-- ARGV[11] most expired leases reclaimed by this call (integer >= 0)
-- ARGV[12] '1' when schedule.lua follows in the same pipeline, else '0' (see acquire.lua)
-- ARGV[13] '1' to have the pool counters in the reply, else '0'
-- ARGV[14] target domain of the new lease, or '' (or absent): as acquire.lua's ARGV[14]
-- ARGV[15..21] optional: the outcome of the released lease, as release.lua's ARGV[4..10];
--   applied with the release, before the walk (a proxy it cools down is not picked)
-- Returns (see _pool.lua) {code, name, counters, release code, released lease JSON,
--   covered, ...}: the release code is release.lua's ('released' | 'expired' | 'noop' |
--   'missing'; the JSON false when missing); covered and what follows as in acquire.lua by
--   code: 'ok' | 'exists' (lease JSON, proxy id, state JSON, lease count, record) or 'scan'
--   (next offset, candidate items)
--   or {'schedule', name, false}: nothing was done (not even the release); send again with
--   schedule.lua pipelined
--   or {'build', name, false}: nothing was done (not even the release): the selector's set
--   is being built (see ensure_set in _pool.lua); send again | 'nopool' | 'stale'
local expected_name, selector, filter_json = ARGV[1], ARGV[2], ARGV[3]
local budget, max_undecided = tonumber(ARGV[4]), tonumber(ARGV[5])
local old_id, lease_id, consumer_id = ARGV[6], ARGV[7], ARGV[8]
local duration_us, retention_us = tonumber(ARGV[9]), tonumber(ARGV[10])
local reclaim_batch, with_schedule = tonumber(ARGV[11]), ARGV[12] == '1'
local with_counters = ARGV[13] == '1'
local target = (ARGV[14] or '') ~= '' and ARGV[14] or nil
local outcome = outcome_from(ARGV, 15)

local name, refused = pool_named(expected_name)
if not name then
  return refused
end

local sched = scheduled_at()
local now = now_us()

-- The release, as release.lua does it (release_reporting in _outcome.lua).
local function release_old()
  return release_reporting(old_id, outcome, now, retention_us)
end

local function reply(code, released_code, released, fields)
  local out = answer(code, name, with_counters, {released_code, released, sched and 1 or 0})
  for _, value in ipairs(fields) do
    out[#out + 1] = value
  end
  return out
end

local existing = redis.call('HGET', K_LEASES, lease_id)
if existing then
  local released_code, released = release_old()
  local id = cjson.decode(existing).proxy
  return reply('exists', released_code, released, {
    existing, id, redis.call('HGET', K_STATE, id),
    tonumber(redis.call('HGET', K_COUNTS, id)) or 0, redis.call('HGET', K_RECORDS, id)})
end

if not with_schedule and (sched == nil or sched > now + duration_us) then
  return answer('schedule', name, false)
end
local set = SELECTOR_SETS[selector]
if not ensure_set(set) then
  return answer('build', name, false)
end
note_use(set, now)
local released_code, released = release_old()
if reclaim_batch > 0 then
  reclaim_due(now, retention_us, reclaim_batch)
end
restore_due(now)  -- proxies whose cool-down ended (_outcome.lua)

local items = {}
local next_offset = walk(items, selector, filter_json, 0, budget, max_undecided, target, now)
if items[2] == 1 then
  local id, state, record = items[1], items[3], items[5]
  local rec, count = start_lease(id, state, lease_id, consumer_id, now, duration_us)
  if with_schedule then
    sched = note_scheduled(now + duration_us, sched)
  end
  if selector == 'round_robin' then
    redis.call('SET', K_CURSOR, id)
  end
  return reply('ok', released_code, released, {rec, id, state, count, record})
end
local fields = {next_offset}
for _, value in ipairs(items) do
  fields[#fields + 1] = value
end
return reply('scan', released_code, released, fields)
