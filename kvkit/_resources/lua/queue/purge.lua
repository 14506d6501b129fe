-- KEYS: stream, delayed, dead, ids, cursors, generation
-- ARGV: dead ('1'/'0')
--! include lib.lua
local stream, delayed, dead, ids, cursors = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
local groups = {}
if redis.call('EXISTS', stream) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    groups[#groups + 1] = fmap(g)['name']
  end
end
redis.call('DEL', stream, delayed, ids, cursors)
redis.call('INCR', KEYS[6])  -- voids every dedupe record
if ARGV[1] == '1' then
  n = n + redis.call('XLEN', dead)
  redis.call('DEL', dead)
end
-- The groups that existed stay (empty), so that blocked consumers keep working.
for _, g in ipairs(groups) do redis.call('XGROUP', 'CREATE', stream, g, '0', 'MKSTREAM') end
return n
