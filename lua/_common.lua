-- _common.lua: helpers every script gets. pharox_redis/scripts.py puts this file first in
-- every script (pool and global), so each helper is written once.

-- The server clock in microseconds (exact: below 2^53 until the year 2255).
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- An integer as a decimal string without exponent (tostring would round to 14 digits).
local function int_str(n)
  return string.format('%.0f', n)
end
