-- Remove consumers that hold nothing and were idle too long; return how many hold
-- messages. (Not how many remain: when a read that finds nothing creates a consumer
-- differs between Redis versions and fakeredis. Holding messages is the same everywhere.)
local function gc(stream, group, idle_ms)
  local busy = 0
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local m = {}
    for i = 1, #c, 2 do m[c[i]] = c[i + 1] end
    if tonumber(m['pending']) > 0 then
      busy = busy + 1
    elseif tonumber(m['idle']) > idle_ms then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, m['name'])
    end
  end
  return busy
end
