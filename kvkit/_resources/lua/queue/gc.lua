-- KEYS: stream ; ARGV: group, consumer_idle_ms
--! include gc_lib.lua
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and g[i + 1] == ARGV[1] then
      return gc(KEYS[1], ARGV[1], tonumber(ARGV[2]))
    end
  end
end
return 0
