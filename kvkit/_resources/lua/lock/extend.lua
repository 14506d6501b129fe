-- KEYS: the lock. ARGV: owner id, token, ttl in ms.
-- Sets the lock to expire ttl ms from now (server clock) while this owner and token hold
-- it; returns 1 if so, 0 if it expired or another owner holds it.
if redis.call('GET', KEYS[1]) == ARGV[2] .. ':' .. ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0
