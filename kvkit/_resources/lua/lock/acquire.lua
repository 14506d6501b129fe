-- KEYS: the lock, its fencing counter (same hash slot). ARGV: owner id, ttl in ms.
-- Returns {token, 0} when the caller holds the lock now, {0, pttl} when another owner
-- holds it (pttl -1: a key without expiry, not written by kvkit).
-- The stored value is "<token>:<owner>". Owner ids are unique per acquisition, so finding
-- our own id means this is a retry of a call whose reply was lost: it gets the same token
-- and a fresh TTL, and never takes a second token.
-- Tokens travel as strings: Lua numbers are doubles, exact only up to 2**53.
local current = redis.call('GET', KEYS[1])
if current then
  local sep = string.find(current, ':', 1, true)
  if sep and string.sub(current, sep + 1) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {string.sub(current, 1, sep - 1), 0}
  end
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('INCR', KEYS[2])
local token = redis.call('GET', KEYS[2])
redis.call('SET', KEYS[1], token .. ':' .. ARGV[1], 'PX', ARGV[2])
return {token, 0}
