-- KEYS: user index. Returns the keys of the live sessions, pruning dead members (expired,
-- or deleted behind kvkit's back).
--! include lib.lua
local index = KEYS[1]
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. num(now))
local live = {}
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  if redis.call('EXISTS', key) == 1 then live[#live + 1] = key
  else redis.call('ZREM', index, key) end
end
fix_index(index, now)
return live
