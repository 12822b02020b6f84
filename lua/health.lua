-- health.lua: store a health record for a proxy and, for a health check result, apply its
-- status and checked_at. A reachable record with a latency newer than the one known sets the
-- proxy's latency (LOWEST_LATENCY order). History is capped per proxy.
-- KEYS the pool's keys (see _pool.lua), then <prefix>:{p:<pool>}:health:<proxy id>  zset: record JSON scored by checked_at_us
-- ARGV[1]  proxy id (UUID string)
-- ARGV[2]  '1' to apply status and checked_at to the proxy, '0' to store the record only
-- ARGV[3]  record id (UUID string)
-- ARGV[4]  checked_at in microseconds (integer)
-- ARGV[5]  reachable: '1' or '0'
-- ARGV[6]  latency in milliseconds (integer) or ''
-- ARGV[7]  protocol (string)
-- ARGV[8]  status before, or '' (ignored when applying: the stored status is used)
-- ARGV[9]  status after (string)
-- ARGV[10] error message or ''
-- ARGV[11] new checked_at sort key (18 digits; see codec.checked_key), used when applying
-- ARGV[12] new FIRST_AVAILABLE score (-checked_at_us), used when applying
-- ARGV[13] most records kept per proxy (integer >= 1)
-- Returns (see _pool.lua) {'ok', name, false, state JSON, lease count, record}
--   | {'missing', name, false} | 'nopool'
local id, apply, checked_us = ARGV[1], ARGV[2] == '1', ARGV[4]
local reachable, latency = ARGV[5] == '1', ARGV[6]
local cap = tonumber(ARGV[13])

local name, refused = pool_named('')
if not name then
  return refused
end
local p = load_proxy(id)
if not p then
  return answer('missing', name, false)
end
local before = ARGV[8]
if apply then
  before = p.st.s
end
local row = {id = ARGV[3], checked = checked_us, reachable = reachable, protocol = ARGV[7],
             after = ARGV[9]}
if latency ~= '' then row.latency = tonumber(latency) end
if before ~= '' then row.before = before end
if ARGV[10] ~= '' then row.error = ARGV[10] end
redis.call('ZADD', KEYS[#KEYS], checked_us, cjson.encode(row))
redis.call('ZREMRANGEBYRANK', KEYS[#KEYS], 0, -(cap + 1))

local st, changed = cjson.decode(redis.call('HGET', K_STATE, id)), false
if apply then
  st.s, st.c, st.f, changed = ARGV[9], ARGV[11], ARGV[12], true
end
if reachable and latency ~= '' and (st.t == nil or tonumber(checked_us) >= tonumber(st.t)) then
  st.l, st.t, changed = tonumber(latency), checked_us, true
end
local state = redis.call('HGET', K_STATE, id)
if changed then
  state = cjson.encode(st)
  redis.call('HSET', K_STATE, id, state)
  reindex(id, p, {st = st, n = p.n})
end
return answer('ok', name, false, {state, p.n, redis.call('HGET', K_RECORDS, id)})
