-- KEYS: session. ARGV: n, n field names to delete, then field/value pairs to set.
-- Returns the flat HGETALL after the change, or nil when the session does not exist
-- (checked first: HSET must never create a session).
--! include lib.lua
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return false end
local idle, deadline, index = meta(key)
if not slide(key, idle, deadline, index, now_ms()) then return false end
local n = tonumber(ARGV[1])
if n > 0 then
  local names = {}
  for i = 2, n + 1 do names[#names + 1] = ARGV[i] end
  hdel_all(key, names)
end
hset_from(key, ARGV, n + 2)
return redis.call('HGETALL', key)
