-- KEYS: session. ARGV: idle ms (0: none), max age ms (0: none), index key ('': none),
-- encoded metadata ('': none), then field/value pairs. Replaces whatever is under the
-- (fresh, random) key, so a retry after a lost reply just writes the same session again.
--! include lib.lua
local key = KEYS[1]
local now = now_ms()
local idle = tonumber(ARGV[1])
local deadline = 0
if tonumber(ARGV[2]) > 0 then deadline = now + tonumber(ARGV[2]) end
local index = ARGV[3]
if index == '' then index = false end
redis.call('DEL', key)
redis.call('HSET', key, '_t', ARGV[1], '_x', num(deadline), '_c', num(now))
if index then redis.call('HSET', key, '_i', index) end
if ARGV[4] ~= '' then redis.call('HSET', key, '_m', ARGV[4]) end
hset_from(key, ARGV, 5)
slide(key, idle, deadline, index, now)
return 1
