-- KEYS: stream, dead, ids
-- ARGV: group, receipt, reason
--! include lib.lua
local stream, dead, ids, group, eid = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 then return 0 end
local e = redis.call('XRANGE', stream, eid, eid)
if #e == 0 then
  redis.call('XACK', stream, group, eid)
  return 0
end
local f = fmap(e[1][2])
local now = now_ms()
local deliveries = (tonumber(f['prior_deliveries']) or 0) + tonumber(p[1][4])
bury(dead, f['id'] or eid, f['payload'] or '', enqueued(f, eid),
     fmt(deliveries), ARGV[3], group, now)
finish(stream, ids, group, others(stream, group), eid, f['id'])
return 1
