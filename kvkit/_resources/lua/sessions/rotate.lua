-- KEYS: old session, new session (same slot: same tag). Returns 1 when the session is
-- under the new key afterwards. The new key is fresh and random, so finding it already
-- there means this very call ran before and its reply was lost: report success again.
--! include lib.lua
local old, new = KEYS[1], KEYS[2]
if redis.call('EXISTS', new) == 1 then return 1 end
if redis.call('EXISTS', old) == 0 then return 0 end
redis.call('RENAME', old, new)
local idle, deadline, index = meta(new)
if index then redis.call('ZREM', index, old) end
if slide(new, idle, deadline, index, now_ms()) then return 1 end
return 0
