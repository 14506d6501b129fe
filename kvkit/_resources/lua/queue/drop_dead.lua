-- KEYS: dead
-- ARGV: start ('-' or '(' .. entry id), batch, all ('1'/'0'), then wanted ids
-- Deletes dead letters (all, or those with the wanted message ids) without requeueing them.
-- Returns {deleted, next start or ''}.
--! include lib.lua
local dead = KEYS[1]
local wanted = wanted_ids(3)
local batch = tonumber(ARGV[2])
local entries = redis.call('XRANGE', dead, ARGV[1], '+', 'COUNT', batch)
local deleted = 0
for _, e in ipairs(entries) do
  local id = fmap(e[2])['id'] or e[1]
  if (not wanted) or wanted[id] then
    redis.call('XDEL', dead, e[1])
    deleted = deleted + 1
  end
end
return {deleted, next_start(entries, batch)}
