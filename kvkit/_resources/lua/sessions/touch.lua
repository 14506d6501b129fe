-- KEYS: session. ARGV: new idle ms ('-1': keep the stored one; '0': none). Returns 1/0.
--! include lib.lua
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return 0 end
local idle, deadline, index = meta(key)
if ARGV[1] ~= '-1' then
  idle = tonumber(ARGV[1])
  redis.call('HSET', key, '_t', ARGV[1])
end
if slide(key, idle, deadline, index, now_ms()) then return 1 end
return 0
