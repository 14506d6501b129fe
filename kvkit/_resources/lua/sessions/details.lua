-- KEYS: user index. Like members.lua (pruning dead members), but returns for each live
-- session: key, created ms, last seen ms, encoded metadata ('': none), flat.
-- A session stored before kvkit recorded these times has neither until its next use:
-- its last use is then estimated from its remaining idle TTL (the key expires `idle` ms
-- after the last use that slid it; a lower bound when the absolute deadline cut that
-- short), or taken as now without an idle TTL, and its creation as that last use.
--! include lib.lua
local index = KEYS[1]
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. num(now))
local out = {}
for _, key in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  local m = redis.call('HMGET', key, '_c', '_s', '_m', '_t')
  if m[4] then
    local seen = tonumber(m[2])
    if not seen then
      seen = now
      local idle, left = tonumber(m[4]) or 0, redis.call('PTTL', key)
      if idle > 0 and left > 0 and left < idle then seen = now - idle + left end
    end
    out[#out + 1] = key
    out[#out + 1] = num(tonumber(m[1]) or seen)
    out[#out + 1] = num(seen)
    out[#out + 1] = m[3] or ''
  else
    -- Gone (expired, deleted behind kvkit's back): its `_t` is always set while it lives.
    redis.call('ZREM', index, key)
  end
end
fix_index(index, now)
return out
