-- _address.lua: a proxy's address (its identity in its pool) and the pool's address index.
-- pharox_redis/scripts.py puts it after _pool.lua in front of the scripts that keep the
-- index (save_proxies.lua, delete_proxy.lua, audit.lua).
--
-- A proxy's address is "<protocol>://<host>:<port>", then " <user>" when it has credentials,
-- with the host in lower case; it is read from the proxy's connection record (K_RECORDS, the
-- msgpack array codec.ProxyRecord writes: host, port, protocol, user, password). The host
-- holds no whitespace (codec.py refuses it), so the first space ends the address proper and
-- any user name after it is unambiguous. K_ADDRESSES maps each address to the one proxy id
-- holding it. Meta field 'addr' is 'r' when the index is complete, an HSCAN cursor while
-- ensure_addresses builds it (pools saved before it existed), absent before that.
local ADDRESS_BUILD_STEP = 2000  -- records one ensure_addresses call indexes

-- The value at byte `pos` of msgpack `raw` (a str, a non-negative int, or nil) and the
-- position after it. Only the forms msgspec writes for a ProxyRecord occur.
local function mp_value(raw, pos)
  local b = string.byte(raw, pos)
  if b == nil or b == 0xc0 then
    return nil, pos + 1
  elseif b < 0x80 then
    return b, pos + 1
  elseif b == 0xcc then
    return string.byte(raw, pos + 1), pos + 2
  elseif b == 0xcd then
    return string.byte(raw, pos + 1) * 256 + string.byte(raw, pos + 2), pos + 3
  end
  local len, head
  if b >= 0xa0 and b <= 0xbf then
    len, head = b - 0xa0, 1
  elseif b == 0xd9 then
    len, head = string.byte(raw, pos + 1), 2
  elseif b == 0xda then
    len, head = string.byte(raw, pos + 1) * 256 + string.byte(raw, pos + 2), 3
  else  -- 0xdb: str32
    local b1, b2, b3, b4 = string.byte(raw, pos + 1, pos + 4)
    len, head = ((b1 * 256 + b2) * 256 + b3) * 256 + b4, 5
  end
  return string.sub(raw, pos + head, pos + head + len - 1), pos + head + len
end

-- The address of a connection record (see the note at the top).
local function record_address(raw)
  local host, port, protocol, user, pos
  host, pos = mp_value(raw, 2)  -- byte 1 is the array header
  port, pos = mp_value(raw, pos)
  protocol, pos = mp_value(raw, pos)
  user = mp_value(raw, pos)
  local address = protocol .. '://' .. string.lower(host) .. ':' .. int_str(port)
  if user then
    address = address .. ' ' .. user
  end
  return address
end

-- The address of proxy `id`, or nil when it has no record.
local function address_of(id)
  local raw = redis.call('HGET', K_RECORDS, id)
  return raw and record_address(raw) or nil
end

-- Remove proxy `id`'s entry for `address` (only if the entry is still its own).
local function drop_address(address, id)
  if address and redis.call('HGET', K_ADDRESSES, address) == id then
    redis.call('HDEL', K_ADDRESSES, address)
  end
end

-- One bounded step of building the address index (see the note at the top): each step
-- indexes the records of one HSCAN page; an address two proxies share (saved before the
-- index existed) stays with the first one met. Returns true when the index is complete.
local function ensure_addresses()
  local cursor = redis.call('HGET', K_META, 'addr')
  if cursor == 'r' then
    return true
  end
  if not cursor then
    redis.call('DEL', K_ADDRESSES)
    cursor = '0'
  end
  local scan = redis.call('HSCAN', K_RECORDS, cursor, 'COUNT', ADDRESS_BUILD_STEP)
  local fields = scan[2]
  for i = 1, #fields, 2 do
    redis.call('HSETNX', K_ADDRESSES, record_address(fields[i + 1]), fields[i])
  end
  local state = scan[1] == '0' and 'r' or scan[1]
  redis.call('HSET', K_META, 'addr', state)
  return state == 'r'
end
