-- Shared Lua helpers, prepended to every script.
local unpack = unpack or table.unpack
-- Score of a session without expiry; far beyond any ms timestamp, exact as a double.
local FOREVER = 9007199254740991

local function num(n) return string.format('%.0f', n) end

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The metadata of a session hash: idle TTL ms, deadline ms, index key (or false).
local function meta(key)
  local m = redis.call('HMGET', key, '_t', '_x', '_i')
  return tonumber(m[1]) or 0, tonumber(m[2]) or 0, m[3]
end

-- Prune an index of members whose expiry has passed and let the index key live exactly
-- as long as its longest-lived member (so it never outlives its sessions).
local function fix_index(index, now)
  redis.call('ZREMRANGEBYSCORE', index, '-inf', '(' .. num(now))
  local top = redis.call('ZRANGE', index, -1, -1, 'WITHSCORES')
  if #top == 0 then return end
  local at = tonumber(top[2])
  if at >= FOREVER then redis.call('PERSIST', index)
  else redis.call('PEXPIREAT', index, num(at)) end
end

-- Expire the session at min(now + idle, deadline) and file that expiry as its score in
-- its user's index. When the deadline has passed, delete it instead and return false.
local function slide(key, idle, deadline, index, now)
  local at = FOREVER
  if idle > 0 then at = now + idle end
  if deadline > 0 and deadline < at then at = deadline end
  if at <= now then
    redis.call('DEL', key)
    if index then
      redis.call('ZREM', index, key)
      fix_index(index, now)
    end
    return false
  end
  if at >= FOREVER then redis.call('PERSIST', key)
  else redis.call('PEXPIREAT', key, num(at)) end
  -- Last use, on the server's clock (for "your devices" pages). (A session stored before
  -- kvkit recorded creation times gets its first read as creation time: see get.lua.)
  redis.call('HSET', key, '_s', num(now))
  if index then
    redis.call('ZADD', index, num(at), key)
    fix_index(index, now)
  end
  return true
end

-- HSET the field/value pairs argv[first..] in batches (Lua's unpack has a stack limit).
local function hset_from(key, argv, first)
  local batch = {}
  for i = first, #argv, 2 do
    batch[#batch + 1] = argv[i]
    batch[#batch + 1] = argv[i + 1]
    if #batch >= 256 then
      redis.call('HSET', key, unpack(batch))
      batch = {}
    end
  end
  if #batch > 0 then redis.call('HSET', key, unpack(batch)) end
end

local function hdel_all(key, fields)
  for i = 1, #fields, 256 do
    redis.call('HDEL', key, unpack(fields, i, math.min(i + 255, #fields)))
  end
end
