-- KEYS: key. ARGV: delta, ttl in ms ('' for none).
-- Creates the key with its TTL only when absent; INCRBY keeps an existing key's TTL.
-- The new value is returned as GET's string, not as INCRBY's integer reply: Lua turns
-- integer replies into doubles, which are exact only up to 2**53 (near 2**63 the result
-- came back as -2**63).
if ARGV[2] ~= '' then redis.call('SET', KEYS[1], '0', 'PX', ARGV[2], 'NX') end
redis.call('INCRBY', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
