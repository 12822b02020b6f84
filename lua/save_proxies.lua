-- save_proxies.lua: insert or update proxies of one pool, keeping their lease counts, the
-- latency learnt from health checks and outcomes, and their failures and cool-down (unless
-- the proxy is made active again, see carry_outcomes in _outcome.lua), and re-indexing
-- whatever changed.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] number of proxies n (integer >= 1)
-- ARGV[2 .. 3n+1] n triples: proxy id (UUID string), state JSON (codec.ProxyState without
--         latency), record (msgpack of codec.ProxyRecord)
-- Returns (see _pool.lua) {'ok', name, false, n} | 'nopool'
local n = tonumber(ARGV[1])

local name, refused = pool_named('')
if not name then
  return refused
end
for i = 0, n - 1 do
  local id, state, record = ARGV[2 + 3 * i], ARGV[3 + 3 * i], ARGV[4 + 3 * i]
  local old = load_proxy(id)
  local st = cjson.decode(state)
  if old and (old.st.l or old.st.x or old.st.k) then
    st.l, st.t = old.st.l, old.st.t
    carry_outcomes(id, old.st, st)
    state = cjson.encode(st)
  end
  redis.call('HSET', K_STATE, id, state)
  redis.call('HSET', K_RECORDS, id, record)
  reindex(id, old, {st = st, n = old and old.n or 0})
end
return answer('ok', name, false, {n})
