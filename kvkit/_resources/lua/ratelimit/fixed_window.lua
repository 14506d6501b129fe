-- KEYS: the limiter key, a hash {w = window start us, c = units used in it}.
--! include lib.lua
local now = now_us()
local state = redis.pcall('HMGET', key, 'w', 'c')
local w, used = nil, 0
if not foreign(state) then w = tonumber(state[1]) end
-- The clock stepped back: stay in the newest window seen.
if w and w > now then now = w end
local start = fdiv(now, period) * period
if w == start then used = tonumber(state[2]) or 0 end
local stop = start + period
if used + cost > cap then
  return {0, cap - used, stop - now, stop - now}
end
if consume then
  used = used + cost
  redis.call('HSET', key, 'w', num(start), 'c', num(used))
  expire_at(stop)
end
local reset = 0
if used > 0 then reset = stop - now end
return {1, cap - used, reset, -1}
