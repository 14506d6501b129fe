-- KEYS: stream, delayed, dead, ids
-- ARGV: group, consumer_idle_ms, maxlen
-- Returns {ready, pending, delayed, dead, consumers, oldest_pending_ms or -1,
--          oldest_ready_ms or -1}: the last is how long the first entry the group has not
--          read yet has been in the stream (its entry id holds when it was added).
--! include lib.lua
--! include gc_lib.lua
local stream, delayed, dead, ids, group = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
local now = now_ms()
promote(stream, delayed, dead, ids, now, 1000, tonumber(ARGV[3]))
local xlen = redis.call('XLEN', stream)
local ready, pending, consumers, oldest, waiting = xlen, 0, 0, -1, -1
local after = '-'
if redis.call('EXISTS', stream) == 1 then
  local mine, n = nil, 0
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local m = fmap(g)
    n = n + 1
    if m['name'] == group then mine = m end
  end
  if mine then
    after = '(' .. mine['last-delivered-id']
    pending = tonumber(mine['pending'])
    -- Entries the group holds that were trimmed away by other means than ours (the
    -- oldest ones: they lie before the stream's first entry) are pending but not in the
    -- stream.
    local held = pending
    if pending > 0 then
      local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
      if #first == 0 then
        held = 0
      else
        held = pending - #redis.call('XPENDING', stream, group, '-', '(' .. first[1][1], pending)
      end
    end
    ready = xlen - held
    -- With several groups the stream also holds entries only others still need.
    if n > 1 and mine['lag'] then ready = tonumber(mine['lag']) end
    consumers = gc(stream, group, tonumber(ARGV[2]))
    if pending > 0 then
      for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 100)) do
        oldest = math.max(oldest, tonumber(p[3]))
      end
    end
  end
end
if xlen > 0 then
  local next_entry = redis.call('XRANGE', stream, after, '+', 'COUNT', 1)
  if #next_entry > 0 then
    waiting = math.max(0, now - tonumber(string.match(next_entry[1][1], '^(%d+)')))
  end
end
return {math.max(ready, 0), pending, redis.call('ZCARD', delayed), redis.call('XLEN', dead),
        consumers, oldest, waiting}
