-- KEYS: every key of one queue (all in its slot). ARGV: ttl in ms.
-- Gives each existing key that TTL (a throwaway queue, such as the health probes', then
-- vanishes that long after its last use).
for _, key in ipairs(KEYS) do redis.call('PEXPIRE', key, ARGV[1]) end
return #KEYS
