-- KEYS: session. Returns the data fields (flat d:<name>, value pairs; after sliding) or nil.
-- Only the data fields travel back: the metadata (and the meta dict) would only be parsed
-- and dropped by the client on every request.
--! include lib.lua
local key = KEYS[1]
local h = redis.call('HGETALL', key)
if #h == 0 then return false end
local idle, deadline, index, created = 0, 0, false, false
local data = {}
for i = 1, #h, 2 do
  local f = h[i]
  if string.byte(f, 1) == 100 and string.byte(f, 2) == 58 then  -- 'd:'
    data[#data + 1] = f
    data[#data + 1] = h[i + 1]
  elseif f == '_t' then idle = tonumber(h[i + 1])
  elseif f == '_x' then deadline = tonumber(h[i + 1])
  elseif f == '_i' then index = h[i + 1]
  elseif f == '_c' then created = true end
end
local now = now_ms()
if not slide(key, idle, deadline, index, now) then return false end
-- A session stored before kvkit recorded creation times: its first read is its creation.
if not created then redis.call('HSET', key, '_c', num(now)) end
return data
