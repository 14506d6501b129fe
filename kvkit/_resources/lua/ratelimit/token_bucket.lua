-- KEYS: the limiter key, a hash {s = tick of the last change, d = debt}: GCRA. The debt
-- (how far the bucket is below full) counts in tick/limit units, so a unit costs
-- period_ticks, a tick of time repays `limit`, and the bucket holds cap * period_ticks.
--! include lib.lua
local limit = tonumber(ARGV[3])
local tick = tonumber(ARGV[4])
local period_ticks = tonumber(ARGV[5])
local now = fdiv(now_us(), tick)
local state = redis.pcall('HMGET', key, 's', 'd')
local debt = 0
if not foreign(state) then
  local stamp, stored = tonumber(state[1]), tonumber(state[2])
  if stamp and stored then
    -- The clock stepped back: keep the debt as it was.
    if stamp > now then now = stamp end
    debt = math.max(0, stored - (now - stamp) * limit)
  end
end
local full = cap * period_ticks
local after = debt + cost * period_ticks
if after > full then
  return {0, fdiv(full - debt, period_ticks), cdiv(debt, limit) * tick,
          cdiv(after - full, limit) * tick}
end
if consume then
  debt = after
  redis.call('HSET', key, 's', num(now), 'd', num(debt))
  expire_at((now + cdiv(debt, limit)) * tick)
end
return {1, fdiv(full - debt, period_ticks), cdiv(debt, limit) * tick, -1}
