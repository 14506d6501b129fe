-- KEYS: the limiter key, a list: one element per admitted hit still inside the window,
-- newest first: "<time us>:<units admitted before it>:<cost>:<oldest time>:<oldest before>:
-- <expiry ms>".
-- The running total makes the units in the window one subtraction (newest total - oldest
-- "before"); the newest element also names the oldest entry inside the window when it
-- was pushed, so while that entry is still inside, a hit reads the head only. When it has
-- left, the hit drops every entry that has, from the tail (each entry is dropped once).
-- The tail is always that oldest entry: older ones were dropped before it was recorded.
-- The key must live until the newest entry leaves the window; its expiry (also in the
-- newest element) is set a period further than that, so most hits need not move it.
--! include lib.lua
local now = now_us()

local function parse(entry)
  local at, before, units, old_at, old_before, expiry =
    string.match(entry, '^(%d+):(%d+):(%d+):(%d+):(%d+):(%d+)$')
  return tonumber(at), tonumber(before), tonumber(units), tonumber(old_at),
    tonumber(old_before), tonumber(expiry)
end

local newest = redis.pcall('LINDEX', key, 0)
if foreign(newest) then newest = false end
local last, newest_at, old_at, old_before, expiry = 0, 0, 0, 0, 0
if newest then
  local at, before, units
  at, before, units, old_at, old_before, expiry = parse(newest)
  newest_at = at
  -- The clock stepped back: never free units early.
  if at > now then now = at end
  last = before + units
end
-- Entries after the cutoff are inside the window (now - period, now].
local cutoff = now - period
local used, tail = 0, -1
if newest and newest_at > cutoff then
  if old_at <= cutoff then
    -- Find the oldest entry inside: a hit drops the older ones, a peek steps over them.
    local at, before = parse(redis.call('LINDEX', key, -1))
    while at <= cutoff do
      if consume then redis.call('RPOP', key) else tail = tail - 1 end
      at, before = parse(redis.call('LINDEX', key, tail))
    end
    old_at, old_before = at, before
  end
  used = last - old_before
elseif newest and consume then
  redis.call('DEL', key)  -- every entry has left the window
  expiry = 0
end

if used + cost <= cap then
  if consume then
    if used == 0 then old_at, old_before = now, last end  -- this hit starts the log
    local moved = expiry < cdiv(now + period, 1000)
    if moved then expiry = cdiv(now + 2 * period, 1000) end
    redis.call('LPUSH', key, string.format('%.0f:%.0f:%.0f:%.0f:%.0f:%.0f',
      now, last, cost, old_at, old_before, expiry))
    if moved then redis.call('PEXPIREAT', key, num(expiry)) end
    used = used + cost
    newest_at = now
  end
  local reset = 0
  if used > 0 then reset = newest_at + period - now end
  return {1, cap - used, reset, -1}
end
-- Denied: the hit fits once the oldest entries holding `need` units have left the
-- window. Every entry holds at least one unit, so they are among the oldest `need`.
local need = used + cost - cap
local oldest = redis.call('LRANGE', key, tail - need + 1, tail)
local retry = -1
for i = #oldest, 1, -1 do
  local at, before, units = parse(oldest[i])
  if before + units - old_before >= need then
    retry = at + period - now
    break
  end
end
return {0, cap - used, newest_at + period - now, retry}
