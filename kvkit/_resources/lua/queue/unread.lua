-- KEYS: stream
-- ARGV: group, consumer, visibility_ms, then the entry ids read last (in stream order)
-- Gives back new messages a pop read but had no room for (see the driver's _take): they
-- become unread again, as if never delivered, when nobody has read past them since (the
-- group's last-delivered id moves back before them); else they are left as leases that
-- expired just now with no delivery counted, reclaimed in stream order. Returns 1 or 0.
--! include lib.lua
local stream, group, n = KEYS[1], ARGV[1], #ARGV - 3
local mine = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local m = fmap(g)
  if m['name'] == group then mine = m end
end
if not mine then return 0 end
if mine['last-delivered-id'] == ARGV[#ARGV] then
  for i = 4, #ARGV, 500 do
    redis.call('XACK', stream, group, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  -- Back to the entry before the first one given back: every entry up to it was read.
  local prev = redis.call('XREVRANGE', stream, '(' .. ARGV[4], '-', 'COUNT', 1)
  local before = '0-0'
  if #prev > 0 then before = prev[1][1] end
  local read = tonumber(mine['entries-read'])
  if read then
    redis.call('XGROUP', 'SETID', stream, group, before, 'ENTRIESREAD', fmt(read - n))
  else
    redis.call('XGROUP', 'SETID', stream, group, before)
  end
  return 1
end
for i = 4, #ARGV, 500 do
  local args = {stream, group, ARGV[2], 0}
  for j = i, math.min(i + 499, #ARGV) do args[#args + 1] = ARGV[j] end
  for _, a in ipairs({'IDLE', ARGV[3], 'RETRYCOUNT', 0, 'JUSTID'}) do args[#args + 1] = a end
  redis.call('XCLAIM', unpack(args))
end
return 0
