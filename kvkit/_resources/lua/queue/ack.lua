-- KEYS: stream, ids, rates
-- ARGV: group, n, the n receipts' message ids joined by ',', the n receipts joined by ',',
-- then ids to look up. (Joined: one argument instead of n each. Arguments are much of what
-- an ack costs: parsing them on the server, handing them to Lua, packing them here.)
--! include lib.lua
local stream, ids, group = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', stream) == 0 then return 0 end
local n = tonumber(ARGV[2])
local mids, rec = {}, {}
for mid in string.gmatch(ARGV[3] .. ',', '([^,]*),') do mids[#mids + 1] = mid end
for eid in string.gmatch(ARGV[4], '[^,]+') do rec[#rec + 1] = eid end
local mine, groups = nil, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local m = fmap(g)
  if m['name'] == group then
    mine = m
  else
    groups = groups or {}
    groups[#groups + 1] = m
  end
end
if not mine then return 0 end
local acked = 0
if n > 0 and not groups then
  -- The usual case, one group acknowledging delivered messages: batch it. Acknowledged
  -- entries below the first pending (and delivered) one are cut off with XTRIM MINID,
  -- which drops whole stream nodes at once -- far cheaper than one XDEL per entry; only
  -- entries acknowledged out of order need XDEL. A receipt that is no longer pending has
  -- been settled (its entry deleted) already, so deleting it again is harmless.
  local all = true
  for i = 1, n, 500 do
    local j = math.min(i + 499, n)
    local k = redis.call('XACK', stream, group, unpack(rec, i, j))
    acked = acked + k
    if k < j - i + 1 then all = false end
  end
  local p = redis.call('XPENDING', stream, group, '-', '+', 1)
  if #p > 0 then
    redis.call('XTRIM', stream, 'MINID', p[1][1])
    -- Some receipts may lie above the first pending entry. XDEL of an entry the trim
    -- already removed is a cheap no-op, cheaper than sorting them out here in Lua.
    for i = 1, n, 500 do
      redis.call('XDEL', stream, unpack(rec, i, math.min(i + 499, n)))
    end
  else
    -- Nothing pending: every delivered entry is acknowledged; cut up to the last one.
    local ms, seq = string.match(mine['last-delivered-id'], '^(%d+)-(%d+)$')
    redis.call('XTRIM', stream, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
  end
  if all then
    for i = 1, n, 500 do
      redis.call('HDEL', ids, unpack(mids, i, math.min(i + 499, n)))
    end
  else
    for i = 1, n do
      local eid = rec[i]
      if redis.call('HGET', ids, mids[i]) == eid then redis.call('HDEL', ids, mids[i]) end
    end
  end
else
  for i = 1, n do
    local eid = rec[i]
    if redis.call('XACK', stream, group, eid) == 1 then
      acked = acked + 1
      finish(stream, ids, group, groups, eid, mids[i])
    end
  end
end
-- Ids: the index gives the current entry, which must be leased to be acknowledged.
for i = 5, #ARGV do
  local eid = redis.call('HGET', ids, ARGV[i])
  if eid and redis.call('XACK', stream, group, eid) == 1 then
    acked = acked + 1
    finish(stream, ids, group, groups, eid, ARGV[i])
  end
end
tally(KEYS[3], 'o', acked)
return acked
