-- KEYS: key. Returns 1 when the key exists (its TTL is then removed), else 0.
-- PERSIST answers 0 both for "missing" and "had no TTL"; EXISTS tells them apart.
local exists = redis.call('EXISTS', KEYS[1])
redis.call('PERSIST', KEYS[1])
return exists
