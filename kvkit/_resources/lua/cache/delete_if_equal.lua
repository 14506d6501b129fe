-- KEYS: key. ARGV: expected value. Compare-and-delete: a single-flight lock is released
-- only while we still own it.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
