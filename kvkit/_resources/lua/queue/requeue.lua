-- KEYS: stream, dead, ids
-- ARGV: start ('-' or '(' .. entry id), maxlen, batch, all ('1'/'0'), then wanted ids
-- Returns {moved, next start or ''}.
--! include lib.lua
local stream, dead, ids = KEYS[1], KEYS[2], KEYS[3]
local wanted = wanted_ids(4)
local batch = tonumber(ARGV[3])
local entries = redis.call('XRANGE', dead, ARGV[1], '+', 'COUNT', batch)
local moved = 0
local now = now_ms()
for _, e in ipairs(entries) do
  local f = fmap(e[2])
  local id = f['id'] or e[1]
  if (not wanted) or wanted[id] then
    add(stream, ids, id, f['payload'] or '', f['enqueued_ms'] or fmt(now), '0')
    redis.call('XDEL', dead, e[1])
    moved = moved + 1
  end
end
if moved > 0 then trim(stream, ids, tonumber(ARGV[2])) end
return {moved, next_start(entries, batch)}
