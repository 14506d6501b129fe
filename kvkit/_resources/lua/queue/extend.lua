-- KEYS: stream, ids
-- ARGV: group, id, receipt or '', lease, idle_ms
local eid = ARGV[3]
if eid == '' then eid = redis.call('HGET', KEYS[2], ARGV[2]) end
if not eid then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], eid, eid, 1)
if #p == 0 then return 0 end
local lease = tonumber(ARGV[4])
if lease > 0 and tonumber(p[1][4]) ~= lease then return 0 end
-- Same owner, idle time set so that the lease has the wanted length; JUSTID keeps the
-- delivery counter.
return #redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, eid, 'IDLE', ARGV[5], 'JUSTID')
