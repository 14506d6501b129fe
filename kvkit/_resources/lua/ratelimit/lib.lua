-- Shared by the rate-limit scripts. Every script takes the same ARGV:
--   1 capacity (units available at once), 2 period (us), 3 limit (units per period),
--   4 tick (us, token bucket), 5 period in ticks, 6 cost, 7 consume ('1': hit, '0': peek)
-- and returns {allowed 0/1, remaining, reset_after us, retry_after us (-1: none)}.
-- All arithmetic is on integers below 2^52, which Lua's doubles hold exactly; the
-- divisions go through fdiv so that rounding of a quotient can never shift a result.
-- kvkit/_ratelimit_base.py does the same steps in Python for the memory engine.
-- (The token bucket reads 3-5 itself: the other scripts do not need them.)
local key = KEYS[1]
local cap = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[6])
local consume = ARGV[7] == '1'

-- Integers as decimal text: tostring() would print 1.7e+15 and lose digits.
local function num(n) return string.format('%.0f', n) end

-- floor(a / b) for non-negative integers, exact.
local function fdiv(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local function cdiv(a, b) return fdiv(a + b - 1, b) end

-- The server's clock in microseconds: one clock for every client of the limiter.
local function now_us()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end

-- Expire the key at the given microsecond (rounded up to Redis' milliseconds).
local function expire_at(us)
  redis.call('PEXPIREAT', key, num(cdiv(us, 1000)))
end

-- A key left by another algorithm under the same name is a different type: a hit starts
-- afresh (DEL), a peek reads it as empty.
local function foreign(reply)
  if type(reply) == 'table' and reply.err then
    if consume then redis.call('DEL', key) end
    return true
  end
  return false
end
