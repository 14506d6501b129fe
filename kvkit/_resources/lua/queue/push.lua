-- KEYS: stream, delayed, ids, dedupe record, generation, rates
-- ARGV: dedupe_ms, maxlen, delay_ms, then id, payload pairs
-- A dedupe record holds "generation:message id"; purge bumps the generation, which voids
-- every record without having to find them (no SCAN, so it works on Cluster too).
--! include lib.lua
local dedupe_ms = tonumber(ARGV[1])
if dedupe_ms > 0 then
  local gen = redis.call('GET', KEYS[5]) or '0'
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    if sep and string.sub(prev, 1, sep - 1) == gen then return string.sub(prev, sep + 1) end
  end
  redis.call('SET', KEYS[4], gen .. ':' .. ARGV[4], 'PX', dedupe_ms)
end
local delay = tonumber(ARGV[3])
if delay > 0 then
  local now = now_ms()
  local due, key = fmt(now + delay), order()
  for i = 4, #ARGV, 2 do
    redis.call('ZADD', KEYS[2], due, member(key, i, ARGV[i], '0', fmt(now), ARGV[i + 1]))
  end
else
  for i = 4, #ARGV, 2 do add_new(KEYS[1], KEYS[3], ARGV[i], ARGV[i + 1]) end
  trim(KEYS[1], KEYS[3], tonumber(ARGV[2]))
end
tally(KEYS[6], 'i', (#ARGV - 3) / 2)
return false
