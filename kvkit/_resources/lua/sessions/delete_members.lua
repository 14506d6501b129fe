-- KEYS: user index. Deletes every session in it and the index; returns how many existed.
--! include lib.lua
local index = KEYS[1]
local n = 0
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  n = n + redis.call('DEL', key)
end
redis.call('DEL', index)
return n
