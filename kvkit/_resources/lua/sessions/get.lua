-- KEYS: session. Returns the flat HGETALL (after sliding) or nil.
--! include lib.lua
local key = KEYS[1]
local h = redis.call('HGETALL', key)
if #h == 0 then return false end
local idle, deadline, index = 0, 0, false
for i = 1, #h, 2 do
  local f = h[i]
  if f == '_t' then idle = tonumber(h[i + 1])
  elseif f == '_x' then deadline = tonumber(h[i + 1])
  elseif f == '_i' then index = h[i + 1] end
end
if not slide(key, idle, deadline, index, now_ms()) then return false end
return h
