-- KEYS: the limiter key, a sorted set: one member per admitted hit, scored by its time
-- (us), named "<units admitted before it>:<cost>" (the running total makes members
-- unique and the units in the window one subtraction: newest total - oldest "before").
--! include lib.lua
local now = now_us()

local function parse(member)
  local before, units = string.match(member, '^(%d+):(%d+)$')
  return tonumber(before), tonumber(units)
end

local newest = redis.pcall('ZRANGE', key, -1, -1, 'WITHSCORES')
if foreign(newest) then newest = {} end
local last, newest_at = 0, 0
if #newest > 0 then
  newest_at = tonumber(newest[2])
  -- The clock stepped back: never free units early.
  if newest_at > now then now = newest_at end
  local before, units = parse(newest[1])
  last = before + units
end
-- Members scored after the cutoff are inside the window (now - period, now].
local cutoff = num(now - period)
if consume then redis.call('ZREMRANGEBYSCORE', key, '-inf', cutoff) end
local used = 0
local oldest = redis.call('ZRANGEBYSCORE', key, '(' .. cutoff, '+inf', 'LIMIT', 0, 1)
if #oldest > 0 then used = last - parse(oldest[1]) end

if used + cost <= cap then
  if consume then
    redis.call('ZADD', key, num(now), num(last) .. ':' .. num(cost))
    used = used + cost
    newest_at = now
    expire_at(now + period)
  end
  local reset = 0
  if used > 0 then reset = newest_at + period - now end
  return {1, cap - used, reset, -1}
end
-- Denied: the hit fits once the oldest entries holding `need` units have left the
-- window. Every entry holds at least one unit, so they are among the first `need`.
local need = used + cost - cap
local first = redis.call('ZRANGEBYSCORE', key, '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', 0, need)
local base = parse(first[1])
local retry = -1
for i = 1, #first, 2 do
  local before, units = parse(first[i])
  if before + units - base >= need then
    retry = tonumber(first[i + 1]) + period - now
    break
  end
end
return {0, cap - used, newest_at + period - now, retry}
