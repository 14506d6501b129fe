-- KEYS: stream, delayed, dead, ids
-- ARGV: group, consumer_idle_ms, maxlen
-- Returns {ready, pending, delayed, dead, consumers, oldest_pending_ms or -1}.
--! include lib.lua
--! include gc_lib.lua
local stream, delayed, dead, ids, group = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
local now = now_ms()
promote(stream, delayed, dead, ids, now, 1000, tonumber(ARGV[3]))
local xlen = redis.call('XLEN', stream)
local ready, pending, consumers, oldest = xlen, 0, 0, -1
if redis.call('EXISTS', stream) == 1 then
  local mine, n = nil, 0
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local m = fmap(g)
    n = n + 1
    if m['name'] == group then mine = m end
  end
  if mine then
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
return {math.max(ready, 0), pending, redis.call('ZCARD', delayed), redis.call('XLEN', dead),
        consumers, oldest}
