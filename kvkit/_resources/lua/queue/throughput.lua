-- KEYS: rates. Returns {server time in ms, the ring's fields and values (HGETALL)}.
--! include lib.lua
return {now_ms(), redis.call('HGETALL', KEYS[1])}
