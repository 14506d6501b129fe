-- KEYS: stream, delayed, dead, ids, cursors
-- ARGV: group, consumer, count, visibility_ms, max_deliveries, maxlen, promote_limit, reason,
-- scan_interval_ms
-- Returns {entries, ms_until_due, ms_until_expiry, more}: -1 for nothing scheduled; more is
-- 1 when work is left for the next run (an XAUTOCLAIM pass in progress, or the promotion
-- limit reached). An entry is {entry_id, fields, delivery_counter}.
--! include lib.lua
local stream, delayed, dead, ids, cursors = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer = ARGV[1], ARGV[2]
local maxd = tonumber(ARGV[5])
local now = now_ms()
-- 1. Promote due delayed messages (the XREADGROUP that follows in the pipeline reads them)
--    first: the maxlen trim they may cause drops leases, which must not be reclaimed.
local limit = tonumber(ARGV[7])
local promoted = promote(stream, delayed, dead, ids, now, limit, tonumber(ARGV[6]))
-- 2. Reclaim leases idle for longer than the visibility timeout, in stream order, at most
--    `count` of them (those over max_deliveries included: they are dead-lettered below).
--    XAUTOCLAIM walks the pending entries from a cursor kept per group; a pass over them
--    starts at most every scan_interval_ms, so that a large number of messages in flight
--    does not make every pop pay for scanning them. A pass that reaches the end with room
--    left starts the next one at once if it may, so that leases which expired behind the
--    cursor come back before new messages. (A missing group fails here, after promoting
--    maybe: harmless, the driver creates the group from the stream's start and reruns.)
--    The group's two fields of the cursors hash: the prefixes keep every group's fields
--    apart whatever the names (with `group` and `group .. ':next'`, groups `g` and
--    `g:next` shared one).
local cfield, nfield = 'cursor:' .. group, 'next:' .. group
local cursor = redis.call('HGET', cursors, cfield) or '0-0'
local budget = tonumber(ARGV[3])
local claimed = {}
local function scan(from)
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], from, 'COUNT', budget)
  for _, e in ipairs(r[2]) do claimed[#claimed + 1] = e end
  budget = budget - #r[2]
  if budget == 0 and #r[2] > 0 then
    -- Resume right after the last lease taken. (Redis' cursor is the next pending entry;
    -- fakeredis' the next expired one, which would skip leases expiring meanwhile.)
    local ms, seq = string.match(r[2][#r[2]][1], '^(%d+)-(%d+)$')
    return ms .. '-' .. fmt(tonumber(seq) + 1)
  end
  return r[1]
end
local function may_start()
  local due = tonumber(redis.call('HGET', cursors, nfield)) or 0
  if now < due then return false end
  redis.call('HSET', cursors, nfield, fmt(now + tonumber(ARGV[9])))
  return true
end
local pos = cursor
if pos ~= '0-0' then pos = scan(pos) end
if pos == '0-0' and budget > 0 and may_start() then pos = scan('0-0') end
if pos ~= cursor then redis.call('HSET', cursors, cfield, pos) end
local more = 0
if pos ~= '0-0' or promoted >= limit then more = 1 end
local out = {}
local groups, looked = nil, false
for _, e in ipairs(claimed) do
  if e[2] then
    local f = fmap(e[2])
    local c = tonumber(redis.call('XPENDING', stream, group, e[1], e[1], 1)[1][4])
    local prior = tonumber(f['prior_deliveries']) or 0
    if prior + c > maxd then
      if not looked then groups = others(stream, group); looked = true end
      bury(dead, f['id'] or e[1], f['payload'] or '', enqueued(f, e[1]),
           fmt(prior + c - 1), ARGV[8], group, now)
      finish(stream, ids, group, groups, e[1], f['id'])
    else
      out[#out + 1] = {e[1], e[2], c}
    end
  end
end
-- 3. When a blocking caller may have to wait: when something becomes available by itself.
local due, expiry = -1, -1
if #out == 0 then
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if #first > 0 then due = math.max(0, tonumber(first[2]) - now) end
  local p = redis.call('XPENDING', stream, group, '-', '+', 1)
  if #p > 0 then expiry = math.max(0, tonumber(ARGV[4]) - tonumber(p[1][3])) end
end
return {out, due, expiry, more}
