-- KEYS: session. ARGV: field/value pairs replacing every data field. Returns 1/0.
--! include lib.lua
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local idle, deadline, index = meta(key)
if not slide(key, idle, deadline, index, now_ms()) then return 0 end
local old = {}
for _, f in ipairs(redis.call('HKEYS', key)) do
  if string.sub(f, 1, 2) == 'd:' then old[#old + 1] = f end
end
hdel_all(key, old)
hset_from(key, ARGV, 1)
return 1
