-- KEYS: the lock. ARGV: owner id, token ('': any token of this owner).
-- Deletes the lock only while this owner (and token) holds it; returns 1 if deleted.
-- Without a token it undoes an acquire whose reply never arrived: the owner id alone
-- names that one acquisition.
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if ARGV[2] ~= '' then
  if current ~= ARGV[2] .. ':' .. ARGV[1] then return 0 end
else
  local suffix = ':' .. ARGV[1]
  if string.sub(current, -string.len(suffix)) ~= suffix then return 0 end
end
redis.call('DEL', KEYS[1])
return 1
