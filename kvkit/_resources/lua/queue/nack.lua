-- KEYS: stream, delayed, dead, ids
-- ARGV: group, id, receipt or '', lease, delay_ms, max_deliveries, counted, reason, maxlen
-- Returns 0 (not leased), 1 (requeued or delayed) or 2 (dead-lettered).
--! include lib.lua
local stream, delayed, dead, ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group = ARGV[1]
local eid = ARGV[3]
if eid == '' then eid = redis.call('HGET', ids, ARGV[2]) end
if not eid then return 0 end
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 then return 0 end
local c = tonumber(p[1][4])
local lease = tonumber(ARGV[4])
if lease > 0 and c ~= lease then return 0 end
local e = redis.call('XRANGE', stream, eid, eid)
if #e == 0 then
  redis.call('XACK', stream, group, eid)
  return 0
end
local f = fmap(e[1][2])
local id = f['id'] or eid
local payload = f['payload'] or ''
local now = now_ms()
local enq = enqueued(f, eid)
local prior = (tonumber(f['prior_deliveries']) or 0) + c
local groups = others(stream, group)
if ARGV[7] == '1' then
  if prior >= tonumber(ARGV[6]) then
    bury(dead, id, payload, enq, fmt(prior), ARGV[8], group, now)
    finish(stream, ids, group, groups, eid, f['id'])
    return 2
  end
else
  prior = prior - 1  -- given back unprocessed: this delivery does not count
end
finish(stream, ids, group, groups, eid, f['id'])
local delay = tonumber(ARGV[5])
if delay > 0 then
  redis.call('ZADD', delayed, fmt(now + delay), member(order(), 0, id, fmt(prior), enq, payload))
  if redis.call('HGET', ids, id) == eid then redis.call('HDEL', ids, id) end
else
  add(stream, ids, id, payload, enq, fmt(prior))
  trim(stream, ids, tonumber(ARGV[9]))
end
return 1
