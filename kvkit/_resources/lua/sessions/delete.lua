-- KEYS: session. Returns how many sessions were deleted (0/1).
--! include lib.lua
local key = KEYS[1]
local index = redis.call('HGET', key, '_i')
local n = redis.call('DEL', key)
if index then
  redis.call('ZREM', index, key)
  fix_index(index, now_ms())
end
return n
