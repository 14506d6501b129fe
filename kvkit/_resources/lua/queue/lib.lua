-- Helpers shared by the queue scripts (included where used: each script runs alone).
local function fmap(f)
  local m = {}
  for i = 1, #f, 2 do m[f[i]] = f[i + 1] end
  return m
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function fmt(n) return string.format('%d', n) end
local function id_lt(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  am = tonumber(am); bm = tonumber(bm)
  if am ~= bm then return am < bm end
  return tonumber(as) < tonumber(bs)
end
-- The other consumer groups of the stream (fan-out), or nil in the usual one-group case.
local function others(stream, group)
  local out = nil
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local m = fmap(g)
    if m['name'] ~= group then
      out = out or {}
      out[#out + 1] = m
    end
  end
  return out
end
-- Whether another group still has to read entry eid, or holds it.
local function needed(stream, groups, eid)
  if not groups then return false end
  for _, g in ipairs(groups) do
    if id_lt(g['last-delivered-id'], eid) then return true end
    if #redis.call('XPENDING', stream, g['name'], eid, eid, 1) > 0 then return true end
  end
  return false
end
-- `group` is done with entry eid of message id: ack it; delete it unless still needed.
local function finish(stream, ids, group, groups, eid, id)
  redis.call('XACK', stream, group, eid)
  if not needed(stream, groups, eid) then
    redis.call('XDEL', stream, eid)
    if id and redis.call('HGET', ids, id) == eid then redis.call('HDEL', ids, id) end
  end
end
-- Like XADD MAXLEN =, but keeping the id index consistent. A leased entry trimmed away is
-- no longer leased, as after a purge: left in the PEL it would stay pending until some
-- XAUTOCLAIM passes it (which Redis does at once, fakeredis only once it expired).
local function trim(stream, ids, maxlen)
  if maxlen <= 0 then return end
  local over = redis.call('XLEN', stream) - maxlen
  if over <= 0 then return end
  local groups = {}
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    groups[#groups + 1] = fmap(g)['name']
  end
  for _, e in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', over)) do
    local m = fmap(e[2])
    if m['id'] and redis.call('HGET', ids, m['id']) == e[1] then
      redis.call('HDEL', ids, m['id'])
    end
    for _, g in ipairs(groups) do redis.call('XACK', stream, g, e[1]) end
    redis.call('XDEL', stream, e[1])
  end
end
-- When the message of a stream entry was first pushed: a fresh push stores only id and
-- payload (its entry id holds the time), a re-added message its original time.
local function enqueued(f, eid)
  return f['enqueued_ms'] or string.match(eid, '^(%d+)')
end
local function add_new(stream, ids, id, payload)
  redis.call('HSET', ids, id, redis.call('XADD', stream, '*', 'id', id, 'payload', payload))
end
local function add(stream, ids, id, payload, enq, prior)
  local eid = redis.call('XADD', stream, '*', 'id', id, 'payload', payload,
                         'enqueued_ms', enq, 'prior_deliveries', prior)
  redis.call('HSET', ids, id, eid)
  return eid
end
local function bury(dead, id, payload, enq, deliveries, reason, group, now)
  redis.call('XADD', dead, '*', 'id', id, 'payload', payload, 'enqueued_ms', enq,
             'deliveries', deliveries, 'reason', reason, 'group', group, 'dead_ms', fmt(now))
end
-- The dead-letter scans (requeue, drop_dead) take a flag, '1' for every message, then the
-- wanted message ids. Returns the set of those ids, or nil for every message.
local function wanted_ids(flag)
  if ARGV[flag] ~= '0' then return nil end
  local wanted = {}
  for i = flag + 1, #ARGV do wanted[ARGV[i]] = true end
  return wanted
end
-- Where the next page of a scan starts ('' when this page was the last).
local function next_start(entries, batch)
  if #entries == batch then return '(' .. entries[#entries][1] end
  return ''
end
-- Members due in the same ms sort by their bytes: each starts with an order key (server
-- time in us, then the position in the batch), so they are promoted in push order as on
-- memory://, not in the order of their random ids.
local function order()
  local t = redis.call('TIME')
  return string.format('~%010d%06d', tonumber(t[1]), tonumber(t[2]))
end
local function member(key, i, id, prior, enq, payload)
  return key .. string.format('%08d', i) .. '\n' .. id .. '\n' .. prior .. '\n' .. enq .. '\n'
         .. payload
end
local function promote(stream, delayed, dead, ids, now, limit, maxlen)
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)
  for _, m in ipairs(due) do
    -- A member without the order key was written by an earlier version.
    local s = 1
    if string.sub(m, 1, 1) == '~' then s = (string.find(m, '\n', 1, true) or #m) + 1 end
    local a = string.find(m, '\n', s, true)
    local b = a and string.find(m, '\n', a + 1, true)
    local c = b and string.find(m, '\n', b + 1, true)
    if c then
      add(stream, ids, string.sub(m, s, a - 1), string.sub(m, c + 1),
          string.sub(m, b + 1, c - 1), string.sub(m, a + 1, b - 1))
    else
      -- Not one of ours (another process wrote it): failing here would stop every pop of
      -- the queue, so it goes to the dead letters alone, as it is, with the reason.
      -- No id field: its dead-letter entry id stands in for it.
      redis.call('XADD', dead, '*', 'payload', m, 'enqueued_ms', fmt(now), 'deliveries', '0',
                 'reason', 'malformed delayed member', 'dead_ms', fmt(now))
    end
    redis.call('ZREM', delayed, m)
  end
  if #due > 0 then trim(stream, ids, maxlen) end
  return #due
end
-- Throughput ring (key `rates`): RATE_SLOTS slots of RATE_MS each, like RATE_BUCKET_MS and
-- RATE_BUCKETS in kvkit/_queue_base.py. Slot s holds its bucket number (b<s>) and the
-- messages pushed (i<s>) and acknowledged (o<s>) in it; a slot is reset when a newer
-- bucket takes it over, so the hash never grows beyond 3 * RATE_SLOTS fields.
local RATE_MS, RATE_SLOTS = 5000, 64
local function tally(rates, column, n)
  if n <= 0 then return end
  local b = math.floor(now_ms() / RATE_MS)
  local s = fmt(b % RATE_SLOTS)
  if redis.call('HGET', rates, 'b' .. s) ~= fmt(b) then
    redis.call('HSET', rates, 'b' .. s, fmt(b), 'i' .. s, 0, 'o' .. s, 0)
  end
  redis.call('HINCRBY', rates, column .. s, n)
end
