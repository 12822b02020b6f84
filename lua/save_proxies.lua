-- save_proxies.lua: insert or update proxies of one pool, keeping their lease counts and the
-- latency learnt from health checks, and re-indexing whatever changed. A proxy's address
-- (see _address.lua) is its identity in the pool: a proxy saved with an address another
-- proxy holds updates that proxy, which keeps its id. Every proxy is resolved before anything
-- is written, so a refused call writes nothing.
-- KEYS the pool's keys (see _pool.lua)
-- ARGV[1] number of proxies n (integer >= 1)
-- ARGV[2 .. 3n+1] n triples: proxy id (UUID string), state JSON (codec.ProxyState without
--         latency), record (msgpack of codec.ProxyRecord)
-- ARGV[3n+2] 'check' to resolve only (nothing is written), else 'write'
-- Returns (see _pool.lua) {'ok', name, false, n, then per proxy: the id it is stored under,
--   1 when it was created or 0 when an existing proxy was updated}
--   | {'conflict', name, false, id, address, id of the proxy holding that address}: a stored
--     proxy cannot take the address of another one; nothing was written
--   | {'build', name, false}: one step of building the address index; send again | 'nopool'
local n = tonumber(ARGV[1])
local check_only = ARGV[3 * n + 2] == 'check'

local name, refused = pool_named('')
if not name then
  return refused
end
if not ensure_addresses() then
  return answer('build', name, false)
end

-- What the earlier proxies of this call will have changed: address -> holder (false when
-- freed), proxy id -> its address ('' for a proxy without a record, false for none).
local holder, address_now = {}, {}
local function holder_of(address)
  local id = holder[address]
  if id == nil then
    id = redis.call('HGET', K_ADDRESSES, address)
    if id and redis.call('HEXISTS', K_STATE, id) == 0 and address_now[id] == nil then
      id = false  -- an entry left by drift: the address is free
    end
  end
  return id or nil
end
local function current_address(id)
  local now = address_now[id]
  if now == nil then
    now = redis.call('HEXISTS', K_STATE, id) == 1 and (address_of(id) or '') or false
  end
  return now
end

local plan = {}
for i = 0, n - 1 do
  local id, record = ARGV[2 + 3 * i], ARGV[4 + 3 * i]
  local address = record_address(record)
  local owner = holder_of(address)
  local was = current_address(id)
  local target = id
  if owner and owner ~= id then
    if was then
      return answer('conflict', name, false, {id, address, owner})
    end
    target, was = owner, address
  end
  if was and was ~= '' and was ~= address then
    holder[was] = false
  end
  holder[address], address_now[target] = target, address
  plan[i] = {target, was, address, was == false}
end

local out = answer('ok', name, false, {n})
for i = 0, n - 1 do
  local target, was, address, created = unpack(plan[i])
  if not check_only then
    local state, record = ARGV[3 + 3 * i], ARGV[4 + 3 * i]
    local old = load_proxy(target)
    local st = cjson.decode(state)
    if old and old.st.l then
      st.l, st.t = old.st.l, old.st.t
      state = cjson.encode(st)
    end
    redis.call('HSET', K_STATE, target, state)
    redis.call('HSET', K_RECORDS, target, record)
    reindex(target, old, {st = st, n = old and old.n or 0})
    if was and was ~= address then
      drop_address(was, target)
    end
    redis.call('HSET', K_ADDRESSES, address, target)
  end
  out[#out + 1] = target
  out[#out + 1] = created and 1 or 0
end
return out
