r"""Queue primitives on Redis Streams and one consumer group per group name.

Key layout of queue ``NAME`` (``{prefix}`` is the client's ``{settings.prefix}:queue:``);
the name in braces is a Cluster hash tag, so every key of a queue is in one slot:

========================================  ==================================================
``{prefix}{NAME}:stream``                 stream of live messages; fields ``id`` and
                                          ``payload`` (a fresh push: the entry id holds the
                                          enqueue time), plus ``enqueued_ms`` and
                                          ``prior_deliveries`` for a message added again
                                          (nack, delay, requeue); consumer groups live on it
``{prefix}{NAME}:ids``                    hash message id -> current stream entry id
                                          (ack/nack/extend by id)
``{prefix}{NAME}:delayed``                sorted set of delayed messages, score = due time
                                          (server ms); member ``~order\nid\nprior\nenqueued
                                          \npayload``, where ``order`` (server time in us,
                                          then the position in the batch) makes messages
                                          due in the same ms sort in push order
``{prefix}{NAME}:dead``                   stream of dead letters (+ ``deliveries``,
                                          ``reason``, ``group``, ``dead_ms``)
``{prefix}{NAME}:cursors``                hash ``cursor:<group>`` -> XAUTOCLAIM cursor,
                                          ``next:<group>`` -> when its next scan may start
``{prefix}{NAME}:dedupe:u:<dedupe_id>``   explicit dedupe record: ``generation:message
                                          id``, expires after the dedupe window
``{prefix}{NAME}:dedupe:r:<token>``       retry record of one push (expires after 120 s)
``{prefix}{NAME}:gen``                    generation counter; ``purge`` increments it,
                                          which voids all dedupe records
========================================  ==================================================

Every step that touches more than one key, or reads then writes, is one Lua script, so it
is atomic and one round trip. A pop is one round trip too: a pipeline of the reclaim script
(promote due delayed messages, XAUTOCLAIM expired leases, dead-letter what exceeded
``max_deliveries``) and a plain ``XREADGROUP`` for new messages -- kept out of Lua because
copying a batch of entries into Lua and back costs more than the read itself. A blocking
pop blocks in ``XREADGROUP BLOCK`` slices shorter than the socket timeout and runs the
reclaim script again between slices, so that due delayed messages and expired leases are
noticed. After a reclaim run that found nothing to do, pops that keep finding new messages
skip the script for up to ``_SKIP_MAX_MS`` (see ``pop``): on a busy queue it cost the
server as much as the read. A pop that finds no new message always runs it.

Message ids are kvkit's (see the queue service), not stream entry ids, because a message
keeps its id when it is given back, delayed or requeued (which appends a new entry).
Acknowledged entries are deleted (XACK, then XTRIM MINID up to the first entry still
pending, and XDEL for the ones acknowledged out of order, in one script). When several
consumer groups read one stream (fan-out), an entry is deleted only once no other group
still has to read it or holds it.
"""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from ..._errors import BackendError
from ..._lua import LuaScript
from ..._queue_types import RawMessage
from .base import AsyncQueueDriver
from .redis_runner import AsyncRedisRunner

# A push whose reply was lost is retried by ``backend.run`` within seconds; its retry
# record lives this long (ms), so a retry never enqueues twice.
_RETRY_WINDOW_MS = 120_000
# Due delayed messages promoted per pop (bounds the script's run time).
_PROMOTE_LIMIT = 1000
# Longest interval (ms) between two reclaim scans of a group's expired leases.
_SCAN_MAX_MS = 1000
# Longest a busy consumer skips the reclaim script (see the driver's pop), in ms.
_SKIP_MAX_MS = 100
# Dead letters scanned per requeue round trip.
_REQUEUE_BATCH = 500
# Most digits of a stored counter: any 18-digit number fits Redis' signed 64-bit integers.
_MAX_DIGITS = 18

# Shared Lua helpers, prepended to the scripts that use them.
_LIB = r"""
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
"""

# KEYS: stream, delayed, ids, dedupe record, generation
# ARGV: dedupe_ms, maxlen, delay_ms, then id, payload pairs
# A dedupe record holds "generation:message id"; purge bumps the generation, which voids
# every record without having to find them (no SCAN, so it works on Cluster too).
_PUSH = (
    _LIB
    + r"""
local dedupe_ms = tonumber(ARGV[1])
if dedupe_ms > 0 then
  local gen = redis.call('GET', KEYS[5]) or '0'
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local sep = string.find(prev, ':', 1, true)
    if sep and string.sub(prev, 1, sep - 1) == gen then return string.sub(prev, sep + 1) end
  end
  redis.call('SET', KEYS[4], gen .. ':' .. ARGV[4], 'PX', dedupe_ms)
end
local delay = tonumber(ARGV[3])
if delay > 0 then
  local now = now_ms()
  local due, key = fmt(now + delay), order()
  for i = 4, #ARGV, 2 do
    redis.call('ZADD', KEYS[2], due, member(key, i, ARGV[i], '0', fmt(now), ARGV[i + 1]))
  end
else
  for i = 4, #ARGV, 2 do add_new(KEYS[1], KEYS[3], ARGV[i], ARGV[i + 1]) end
  trim(KEYS[1], KEYS[3], tonumber(ARGV[2]))
end
return false
"""
)

# KEYS: stream, delayed, dead, ids, cursors
# ARGV: group, consumer, count, visibility_ms, max_deliveries, maxlen, promote_limit, reason,
#       scan_interval_ms
# Returns {entries, ms_until_due, ms_until_expiry, more}: -1 for nothing scheduled; more is
# 1 when work is left for the next run (an XAUTOCLAIM pass in progress, or the promotion
# limit reached). An entry is {entry_id, fields, delivery_counter}.
_RECLAIM = (
    _LIB
    + r"""
local stream, delayed, dead, ids, cursors = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group, consumer = ARGV[1], ARGV[2]
local maxd = tonumber(ARGV[5])
local now = now_ms()
-- 1. Promote due delayed messages (the XREADGROUP that follows in the pipeline reads them)
--    first: the maxlen trim they may cause drops leases, which must not be reclaimed.
local limit = tonumber(ARGV[7])
local promoted = promote(stream, delayed, dead, ids, now, limit, tonumber(ARGV[6]))
-- 2. Reclaim leases idle for longer than the visibility timeout, in stream order, at most
--    `count` of them (those over max_deliveries included: they are dead-lettered below).
--    XAUTOCLAIM walks the pending entries from a cursor kept per group; a pass over them
--    starts at most every scan_interval_ms, so that a large number of messages in flight
--    does not make every pop pay for scanning them. A pass that reaches the end with room
--    left starts the next one at once if it may, so that leases which expired behind the
--    cursor come back before new messages. (A missing group fails here, after promoting
--    maybe: harmless, the driver creates the group from the stream's start and reruns.)
--    The group's two fields of the cursors hash: the prefixes keep every group's fields
--    apart whatever the names (with `group` and `group .. ':next'`, groups `g` and
--    `g:next` shared one).
local cfield, nfield = 'cursor:' .. group, 'next:' .. group
local cursor = redis.call('HGET', cursors, cfield) or '0-0'
local budget = tonumber(ARGV[3])
local claimed = {}
local function scan(from)
  local r = redis.call('XAUTOCLAIM', stream, group, consumer, ARGV[4], from, 'COUNT', budget)
  for _, e in ipairs(r[2]) do claimed[#claimed + 1] = e end
  budget = budget - #r[2]
  if budget == 0 and #r[2] > 0 then
    -- Resume right after the last lease taken. (Redis' cursor is the next pending entry;
    -- fakeredis' the next expired one, which would skip leases expiring meanwhile.)
    local ms, seq = string.match(r[2][#r[2]][1], '^(%d+)-(%d+)$')
    return ms .. '-' .. fmt(tonumber(seq) + 1)
  end
  return r[1]
end
local function may_start()
  local due = tonumber(redis.call('HGET', cursors, nfield)) or 0
  if now < due then return false end
  redis.call('HSET', cursors, nfield, fmt(now + tonumber(ARGV[9])))
  return true
end
local pos = cursor
if pos ~= '0-0' then pos = scan(pos) end
if pos == '0-0' and budget > 0 and may_start() then pos = scan('0-0') end
if pos ~= cursor then redis.call('HSET', cursors, cfield, pos) end
local more = 0
if pos ~= '0-0' or promoted >= limit then more = 1 end
local out = {}
local groups, looked = nil, false
for _, e in ipairs(claimed) do
  if e[2] then
    local f = fmap(e[2])
    local c = tonumber(redis.call('XPENDING', stream, group, e[1], e[1], 1)[1][4])
    local prior = tonumber(f['prior_deliveries']) or 0
    if prior + c > maxd then
      if not looked then groups = others(stream, group); looked = true end
      bury(dead, f['id'] or e[1], f['payload'] or '', enqueued(f, e[1]),
           fmt(prior + c - 1), ARGV[8], group, now)
      finish(stream, ids, group, groups, e[1], f['id'])
    else
      out[#out + 1] = {e[1], e[2], c}
    end
  end
end
-- 3. When a blocking caller may have to wait: when something becomes available by itself.
local due, expiry = -1, -1
if #out == 0 then
  local first = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
  if #first > 0 then due = math.max(0, tonumber(first[2]) - now) end
  local p = redis.call('XPENDING', stream, group, '-', '+', 1)
  if #p > 0 then expiry = math.max(0, tonumber(ARGV[4]) - tonumber(p[1][3])) end
end
return {out, due, expiry, more}
"""
)

# KEYS: stream
# ARGV: group, consumer, visibility_ms, then the entry ids read last (in stream order)
# Gives back new messages a pop read but had no room for (see the driver's _take): they
# become unread again, as if never delivered, when nobody has read past them since (the
# group's last-delivered id moves back before them); else they are left as leases that
# expired just now with no delivery counted, reclaimed in stream order. Returns 1 or 0.
_UNREAD = (
    _LIB
    + r"""
local stream, group, n = KEYS[1], ARGV[1], #ARGV - 3
local mine = nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local m = fmap(g)
  if m['name'] == group then mine = m end
end
if not mine then return 0 end
if mine['last-delivered-id'] == ARGV[#ARGV] then
  for i = 4, #ARGV, 500 do
    redis.call('XACK', stream, group, unpack(ARGV, i, math.min(i + 499, #ARGV)))
  end
  -- Back to the entry before the first one given back: every entry up to it was read.
  local prev = redis.call('XREVRANGE', stream, '(' .. ARGV[4], '-', 'COUNT', 1)
  local before = '0-0'
  if #prev > 0 then before = prev[1][1] end
  local read = tonumber(mine['entries-read'])
  if read then
    redis.call('XGROUP', 'SETID', stream, group, before, 'ENTRIESREAD', fmt(read - n))
  else
    redis.call('XGROUP', 'SETID', stream, group, before)
  end
  return 1
end
for i = 4, #ARGV, 500 do
  local args = {stream, group, ARGV[2], 0}
  for j = i, math.min(i + 499, #ARGV) do args[#args + 1] = ARGV[j] end
  for _, a in ipairs({'IDLE', ARGV[3], 'RETRYCOUNT', 0, 'JUSTID'}) do args[#args + 1] = a end
  redis.call('XCLAIM', unpack(args))
end
return 0
"""
)

# KEYS: stream, ids
# ARGV: group, n, the n receipts' message ids joined by ',', the n receipts joined by ',',
# then ids to look up. (Joined: one argument instead of n each. Arguments are much of what
# an ack costs: parsing them on the server, handing them to Lua, packing them here.)
_ACK = (
    _LIB
    + r"""
local stream, ids, group = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', stream) == 0 then return 0 end
local n = tonumber(ARGV[2])
local mids, rec = {}, {}
for mid in string.gmatch(ARGV[3] .. ',', '([^,]*),') do mids[#mids + 1] = mid end
for eid in string.gmatch(ARGV[4], '[^,]+') do rec[#rec + 1] = eid end
local mine, groups = nil, nil
for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
  local m = fmap(g)
  if m['name'] == group then
    mine = m
  else
    groups = groups or {}
    groups[#groups + 1] = m
  end
end
if not mine then return 0 end
local acked = 0
if n > 0 and not groups then
  -- The usual case, one group acknowledging delivered messages: batch it. Acknowledged
  -- entries below the first pending (and delivered) one are cut off with XTRIM MINID,
  -- which drops whole stream nodes at once -- far cheaper than one XDEL per entry; only
  -- entries acknowledged out of order need XDEL. A receipt that is no longer pending has
  -- been settled (its entry deleted) already, so deleting it again is harmless.
  local all = true
  for i = 1, n, 500 do
    local j = math.min(i + 499, n)
    local k = redis.call('XACK', stream, group, unpack(rec, i, j))
    acked = acked + k
    if k < j - i + 1 then all = false end
  end
  local p = redis.call('XPENDING', stream, group, '-', '+', 1)
  if #p > 0 then
    redis.call('XTRIM', stream, 'MINID', p[1][1])
    -- Some receipts may lie above the first pending entry. XDEL of an entry the trim
    -- already removed is a cheap no-op, cheaper than sorting them out here in Lua.
    for i = 1, n, 500 do
      redis.call('XDEL', stream, unpack(rec, i, math.min(i + 499, n)))
    end
  else
    -- Nothing pending: every delivered entry is acknowledged; cut up to the last one.
    local ms, seq = string.match(mine['last-delivered-id'], '^(%d+)-(%d+)$')
    redis.call('XTRIM', stream, 'MINID', ms .. '-' .. string.format('%d', tonumber(seq) + 1))
  end
  if all then
    for i = 1, n, 500 do
      redis.call('HDEL', ids, unpack(mids, i, math.min(i + 499, n)))
    end
  else
    for i = 1, n do
      local eid = rec[i]
      if redis.call('HGET', ids, mids[i]) == eid then redis.call('HDEL', ids, mids[i]) end
    end
  end
else
  for i = 1, n do
    local eid = rec[i]
    if redis.call('XACK', stream, group, eid) == 1 then
      acked = acked + 1
      finish(stream, ids, group, groups, eid, mids[i])
    end
  end
end
-- Ids: the index gives the current entry, which must be leased to be acknowledged.
for i = 5, #ARGV do
  local eid = redis.call('HGET', ids, ARGV[i])
  if eid and redis.call('XACK', stream, group, eid) == 1 then
    acked = acked + 1
    finish(stream, ids, group, groups, eid, ARGV[i])
  end
end
return acked
"""
)

# KEYS: stream, delayed, dead, ids
# ARGV: group, id, receipt or '', lease, delay_ms, max_deliveries, counted, reason, maxlen
# Returns 0 (not leased), 1 (requeued or delayed) or 2 (dead-lettered).
_NACK = (
    _LIB
    + r"""
local stream, delayed, dead, ids = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group = ARGV[1]
local eid = ARGV[3]
if eid == '' then eid = redis.call('HGET', ids, ARGV[2]) end
if not eid then return 0 end
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 then return 0 end
local c = tonumber(p[1][4])
local lease = tonumber(ARGV[4])
if lease > 0 and c ~= lease then return 0 end
local e = redis.call('XRANGE', stream, eid, eid)
if #e == 0 then
  redis.call('XACK', stream, group, eid)
  return 0
end
local f = fmap(e[1][2])
local id = f['id'] or eid
local payload = f['payload'] or ''
local now = now_ms()
local enq = enqueued(f, eid)
local prior = (tonumber(f['prior_deliveries']) or 0) + c
local groups = others(stream, group)
if ARGV[7] == '1' then
  if prior >= tonumber(ARGV[6]) then
    bury(dead, id, payload, enq, fmt(prior), ARGV[8], group, now)
    finish(stream, ids, group, groups, eid, f['id'])
    return 2
  end
else
  prior = prior - 1  -- given back unprocessed: this delivery does not count
end
finish(stream, ids, group, groups, eid, f['id'])
local delay = tonumber(ARGV[5])
if delay > 0 then
  redis.call('ZADD', delayed, fmt(now + delay), member(order(), 0, id, fmt(prior), enq, payload))
  if redis.call('HGET', ids, id) == eid then redis.call('HDEL', ids, id) end
else
  add(stream, ids, id, payload, enq, fmt(prior))
  trim(stream, ids, tonumber(ARGV[9]))
end
return 1
"""
)

# KEYS: stream, ids
# ARGV: group, id, receipt or '', lease, idle_ms
_EXTEND = r"""
local eid = ARGV[3]
if eid == '' then eid = redis.call('HGET', KEYS[2], ARGV[2]) end
if not eid then return 0 end
local p = redis.call('XPENDING', KEYS[1], ARGV[1], eid, eid, 1)
if #p == 0 then return 0 end
local lease = tonumber(ARGV[4])
if lease > 0 and tonumber(p[1][4]) ~= lease then return 0 end
-- Same owner, idle time set so that the lease has the wanted length; JUSTID keeps the
-- delivery counter.
return #redis.call('XCLAIM', KEYS[1], ARGV[1], p[1][2], 0, eid, 'IDLE', ARGV[5], 'JUSTID')
"""

# KEYS: stream, dead, ids
# ARGV: group, receipt, reason
_DEAD_LETTER = (
    _LIB
    + r"""
local stream, dead, ids, group, eid = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local p = redis.call('XPENDING', stream, group, eid, eid, 1)
if #p == 0 then return 0 end
local e = redis.call('XRANGE', stream, eid, eid)
if #e == 0 then
  redis.call('XACK', stream, group, eid)
  return 0
end
local f = fmap(e[1][2])
local now = now_ms()
local deliveries = (tonumber(f['prior_deliveries']) or 0) + tonumber(p[1][4])
bury(dead, f['id'] or eid, f['payload'] or '', enqueued(f, eid),
     fmt(deliveries), ARGV[3], group, now)
finish(stream, ids, group, others(stream, group), eid, f['id'])
return 1
"""
)

# KEYS: stream, dead, ids
# ARGV: start ('-' or '(' .. entry id), maxlen, batch, all ('1'/'0'), then wanted ids
# Returns {moved, next start or ''}.
_REQUEUE = (
    _LIB
    + r"""
local stream, dead, ids = KEYS[1], KEYS[2], KEYS[3]
local wanted = nil
if ARGV[4] == '0' then
  wanted = {}
  for i = 5, #ARGV do wanted[ARGV[i]] = true end
end
local batch = tonumber(ARGV[3])
local entries = redis.call('XRANGE', dead, ARGV[1], '+', 'COUNT', batch)
local moved = 0
local now = now_ms()
for _, e in ipairs(entries) do
  local f = fmap(e[2])
  local id = f['id'] or e[1]
  if (not wanted) or wanted[id] then
    add(stream, ids, id, f['payload'] or '', f['enqueued_ms'] or fmt(now), '0')
    redis.call('XDEL', dead, e[1])
    moved = moved + 1
  end
end
if moved > 0 then trim(stream, ids, tonumber(ARGV[2])) end
local nxt = ''
if #entries == batch then nxt = '(' .. entries[#entries][1] end
return {moved, nxt}
"""
)

# KEYS: stream, delayed, dead, ids, cursors, generation
# ARGV: dead ('1'/'0')
_PURGE = (
    _LIB
    + r"""
local stream, delayed, dead, ids, cursors = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local n = redis.call('XLEN', stream) + redis.call('ZCARD', delayed)
local groups = {}
if redis.call('EXISTS', stream) == 1 then
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    groups[#groups + 1] = fmap(g)['name']
  end
end
redis.call('DEL', stream, delayed, ids, cursors)
redis.call('INCR', KEYS[6])  -- voids every dedupe record
if ARGV[1] == '1' then
  n = n + redis.call('XLEN', dead)
  redis.call('DEL', dead)
end
-- The groups that existed stay (empty), so that blocked consumers keep working.
for _, g in ipairs(groups) do redis.call('XGROUP', 'CREATE', stream, g, '0', 'MKSTREAM') end
return n
"""
)

_GC_LIB = r"""
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
"""

# KEYS: stream ; ARGV: group, consumer_idle_ms
_GC = (
    _GC_LIB
    + r"""
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  for i = 1, #g, 2 do
    if g[i] == 'name' and g[i + 1] == ARGV[1] then
      return gc(KEYS[1], ARGV[1], tonumber(ARGV[2]))
    end
  end
end
return 0
"""
)

# KEYS: stream, delayed, dead, ids
# ARGV: group, consumer_idle_ms, maxlen
# Returns {ready, pending, delayed, dead, consumers, oldest_pending_ms or -1}.
_STATS = (
    _LIB
    + _GC_LIB
    + r"""
local stream, delayed, dead, ids, group = KEYS[1], KEYS[2], KEYS[3], KEYS[4], ARGV[1]
local now = now_ms()
promote(stream, delayed, dead, ids, now, 1000, tonumber(ARGV[3]))
local xlen = redis.call('XLEN', stream)
local ready, pending, consumers, oldest = xlen, 0, 0, -1
if redis.call('EXISTS', stream) == 1 then
  local mine, n = nil, 0
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
    local m = fmap(g)
    n = n + 1
    if m['name'] == group then mine = m end
  end
  if mine then
    pending = tonumber(mine['pending'])
    -- Entries the group holds that were trimmed away by other means than ours (the
    -- oldest ones: they lie before the stream's first entry) are pending but not in the
    -- stream.
    local held = pending
    if pending > 0 then
      local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
      if #first == 0 then
        held = 0
      else
        held = pending - #redis.call('XPENDING', stream, group, '-', '(' .. first[1][1], pending)
      end
    end
    ready = xlen - held
    -- With several groups the stream also holds entries only others still need.
    if n > 1 and mine['lag'] then ready = tonumber(mine['lag']) end
    consumers = gc(stream, group, tonumber(ARGV[2]))
    if pending > 0 then
      for _, p in ipairs(redis.call('XPENDING', stream, group, '-', '+', 100)) do
        oldest = math.max(oldest, tonumber(p[3]))
      end
    end
  end
end
return {math.max(ready, 0), pending, redis.call('ZCARD', delayed), redis.call('XLEN', dead),
        consumers, oldest}
"""
)


PUSH = LuaScript(_PUSH)
RECLAIM = LuaScript(_RECLAIM)
ACK = LuaScript(_ACK)
NACK = LuaScript(_NACK)
EXTEND = LuaScript(_EXTEND)
DEAD_LETTER = LuaScript(_DEAD_LETTER)
REQUEUE = LuaScript(_REQUEUE)
PURGE = LuaScript(_PURGE)
GC = LuaScript(_GC)
STATS = LuaScript(_STATS)
UNREAD = LuaScript(_UNREAD)


@functools.lru_cache(maxsize=1024)
def _keys(key: str) -> tuple[str, str, str, str, str]:
    """``(stream, delayed, dead, ids, cursors)`` of the queue with base key ``key``."""
    return (
        f"{key}:stream",
        f"{key}:delayed",
        f"{key}:dead",
        f"{key}:ids",
        f"{key}:cursors",
    )


def _nogroup(exc: BaseException) -> bool:
    """Whether ``exc`` says the consumer group (or the stream) does not exist."""
    return "NOGROUP" in str(exc.__cause__ or exc)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


_new_raw = tuple.__new__
monotonic = time.monotonic


def _number(value: Any) -> int | None:
    """A stored counter (``enqueued_ms``, ``deliveries``...) or ``None`` if it is not one.

    kvkit writes them as plain decimal digits; anything else (another process's ``abc``,
    a sign, an exponent, more digits than a 64-bit integer holds) is not trusted.
    """
    if type(value) is bytes and 0 < len(value) <= _MAX_DIGITS and value.isdigit():
        return int(value)
    return None


def _field_text(value: bytes) -> str:
    """A stored text field as ``str``; bytes that are not UTF-8 are shown escaped."""
    return value.decode("utf-8", "backslashreplace")


def _raw(receipt: Any, fields: Any, lease: int) -> RawMessage:
    """Build a :class:`RawMessage` from a stream entry's fields (flat list or dict).

    Never raises on what another process may have written into the stream: a malformed
    entry comes back with no payload and the reason, which makes the queue service
    dead-letter it alone (one bad entry must not block the rest of the queue).
    """
    eid = receipt.decode() if isinstance(receipt, bytes) else str(receipt)
    if isinstance(fields, dict):
        m = fields
    else:
        it = iter(fields)
        m = dict(zip(it, it, strict=False))
    mid, payload = m.get(b"id"), m.get(b"payload")
    enqueued, prior = m.get(b"enqueued_ms"), m.get(b"prior_deliveries")
    problem: str | None = None
    if mid is None:
        text_id = eid
    else:
        try:
            text_id = mid.decode()
        except UnicodeDecodeError:
            text_id, problem = _field_text(mid), "id is not UTF-8"
    # A fresh push stores no time: its entry id holds it.
    enqueued_ms = int(eid.partition("-")[0]) if enqueued is None else _number(enqueued)
    if enqueued_ms is None:
        problem = problem or "enqueued_ms is not a number of milliseconds"
    prior_n = 0 if prior is None else _number(prior)
    if prior_n is None:
        problem = problem or "prior_deliveries is not a count"
    # tuple.__new__ skips NamedTuple's Python-level constructor.
    return _new_raw(
        RawMessage,
        (
            eid,
            text_id,
            payload if problem is None else None,
            enqueued_ms or 0,
            (prior_n or 0) + lease,
            lease,
            None if problem is None else f"malformed entry: {problem}",
        ),
    )


async def _raw_pipeline(pool: Any, commands: list[list[Any]]) -> list[Any]:
    """Send ``commands`` in one write on a pooled connection and read their raw replies.

    Like the backend's raw single-command path: no redis-py pipeline object and no
    response callbacks. An error reply takes its command's place in the result.
    """
    conn = await pool.get_connection()
    try:
        await conn.send_packed_command(conn.pack_commands(commands))
        replies: list[Any] = []
        for _ in commands:
            try:
                replies.append(await conn.read_response())
            except ResponseError as exc:  # read in full: the connection stays clean
                replies.append(exc)
        return replies
    except BaseException:
        # Error, timeout or cancellation with replies possibly in flight: this connection
        # must never serve another caller, or it would hand them our replies.
        await conn.disconnect(nowait=True)
        raise
    finally:
        await pool.release(conn)


def _entries(reply: Any) -> list[Any]:
    """The ``(entry id, fields)`` entries of an XREADGROUP reply on one stream.

    Accepts every shape it comes in: raw RESP3 (``{stream: entries}``), raw RESP2 and
    redis-py's parsed form (``[[stream, entries]]``); ``None``/empty for no entries.
    """
    if not reply:
        return []
    if isinstance(reply, dict):
        value = next(iter(reply.values())) or []
        if value and isinstance(value[0], list) and isinstance(value[0][0], (list, tuple)):
            value = value[0]  # a parsed RESP3 reply wraps the entries once more
        return list(value)
    return list(reply[0][1])


def _raws(entries: list[Any], lease: int | None) -> list[RawMessage]:
    """:class:`RawMessage` of each stream entry (see :func:`_raw`).

    ``lease`` is the delivery counter of every entry (1: new messages, read as
    ``[entry id, fields]``), or ``None`` for reclaimed entries, which come as
    ``[entry id, fields, counter]``.
    """
    if lease is None:
        return [_raw(e[0], e[1], int(e[2])) for e in entries]
    new, raw = _new_raw, RawMessage
    out: list[RawMessage] = []
    append = out.append
    # A fresh push's entry (id and payload; the entry id holds the enqueue time), as a raw
    # reply has it, is read inline: a pop reads many. Anything else takes _raw.
    for eid, f in entries:
        if (
            type(f) is list
            and len(f) == 4
            and f[0] == b"id"
            and f[2] == b"payload"
            and type(eid) is bytes
        ):
            try:
                mid = f[1].decode()
            except UnicodeDecodeError:  # another process's entry: _raw reports it
                append(_raw(eid, f, lease))
                continue
            append(
                new(
                    raw,
                    (
                        eid.decode(),
                        mid,
                        f[3],
                        int(eid[: eid.find(b"-")]),
                        lease,
                        lease,
                        None,
                    ),
                )
            )
        else:
            append(_raw(eid, f, lease))
    return out


class AsyncRedisQueueDriver(AsyncQueueDriver):
    """Queues on one Redis backend (also fakeredis and Cluster)."""

    def __init__(self, backend: AsyncRedisRunner) -> None:
        self._b = backend
        # (stream, group) -> monotonic time until which pops may skip the reclaim script.
        self._skip_until: dict[tuple[str, str], float] = {}

    async def _grouped(self, key: str, group: str, op: Callable[[], Awaitable[Any]]) -> Any:
        """Run ``op`` that needs the group; create the group if it is missing, then rerun."""
        try:
            return await op()
        except BackendError as exc:
            if not _nogroup(exc):
                raise
        await self._create_group(key, group)
        return await op()

    async def _create_group(self, key: str, group: str) -> None:
        stream = _keys(key)[0]

        async def create(r: Any) -> None:
            try:
                # From 0, not $: messages pushed before any consumer existed are delivered.
                await r.xgroup_create(stream, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

        await self._b.run(create, idempotent=True)

    # -- producing ----------------------------------------------------------------------------
    async def push(
        self,
        key: str,
        items: list[tuple[str, bytes]],
        delay_ms: int,
        dedupe: str | None,
        dedupe_ms: int,
        maxlen: int | None,
    ) -> str | None:
        stream, delayed, _, ids, _ = _keys(key)
        if dedupe is not None:
            record, window = f"{key}:dedupe:u:{dedupe}", dedupe_ms
        else:
            # A retry record: if the reply is lost, backend.run retries the script and the
            # record makes the retry a no-op. That is what makes the push idempotent.
            token = items[0][0] if len(items) == 1 else secrets.token_hex(12)
            record, window = f"{key}:dedupe:r:{token}", _RETRY_WINDOW_MS
        args: list[Any] = [window, maxlen or 0, delay_ms]
        for message_id, payload in items:
            args.append(message_id)
            args.append(payload)
        if delay_ms:
            self._delayed(stream, delay_ms)
        original = await self._b.eval(
            PUSH, [stream, delayed, ids, record, f"{key}:gen"], args, idempotent=True
        )
        if original is None or dedupe is None:
            return None
        return _text(original)

    # -- consuming ----------------------------------------------------------------------------
    async def _take(
        self, keys: list[str], args: list[Any], consumer: str, count: int
    ) -> tuple[list[RawMessage], int, int]:
        """One round trip: the reclaim script, then XREADGROUP for new messages."""
        stream, group = keys[0], args[0]
        reclaim = ["EVALSHA", RECLAIM.sha, len(keys), *keys, *args]
        read = ["XREADGROUP", "GROUP", group, consumer, "COUNT", count, "STREAMS", stream, ">"]

        async def op(r: Any) -> Any:
            # Cluster clients have no single pool: they take redis-py's pipeline.
            pool = getattr(r, "connection_pool", None)
            if pool is not None:
                replies = await _raw_pipeline(pool, [reclaim, read])
            else:
                pipe = r.pipeline(transaction=False)
                pipe.execute_command(*reclaim)
                pipe.execute_command(*read)
                replies = await pipe.execute(raise_on_error=False)
            if isinstance(replies[0], NoScriptError):
                # The script was not loaded (a new or restarted server). The read may
                # have leased entries already: keep them, and run the script on its own.
                await r.script_load(RECLAIM.source)
                replies[0] = await r.execute_command(*reclaim)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply  # the script's first: it reports a missing group
            return replies

        (claimed, due, expiry, more), fresh = await self._b.run(op, idempotent=True)
        due, expiry = int(due), int(expiry)
        # When may the next pop skip the script (see pop)? Not while it has work left
        # (an XAUTOCLAIM pass under way, more due messages than one promotion takes, or
        # leases it just reclaimed: more may follow); else until the next delayed message
        # is due, and never for longer than the reclaim scan interval.
        skip_ms = -1 if claimed or int(more) else min(_SKIP_MAX_MS, args[8])
        if 0 <= due < skip_ms:
            skip_ms = due
        self._skip_until[(stream, group)] = monotonic() + skip_ms / 1000.0
        out = _raws(claimed, None)
        entries = _entries(fresh)
        if entries:
            room = count - len(out)
            out.extend(_raws(entries[:room], 1))
            if len(entries) > room:
                # Reclaimed and new messages together exceed count: give the surplus back
                # unread (a second round trip, only on a pop that also reclaimed leases).
                surplus = [_text(eid) for eid, _ in entries[room:]]
                await self._b.eval(
                    UNREAD, [stream], [group, consumer, args[3], *surplus], idempotent=True
                )
        return out, due, expiry

    async def _read(self, stream: str, group: str, consumer: str, count: int) -> list[RawMessage]:
        """A plain ``XREADGROUP`` of new messages (the pop without the reclaim script)."""
        reply = await self._b.command(
            "XREADGROUP",
            "GROUP",
            group,
            consumer,
            "COUNT",
            count,
            "STREAMS",
            stream,
            ">",
            idempotent=True,
        )
        return _raws(_entries(reply), 1)

    def _delayed(self, stream: str, delay_ms: int) -> None:
        """A message of ours becomes due in ``delay_ms``: the pop must not skip past it."""
        for slot, until in self._skip_until.items():
            if slot[0] == stream:
                self._skip_until[slot] = min(until, monotonic() + delay_ms / 1000.0)

    async def pop(
        self,
        key: str,
        group: str,
        consumer: str,
        count: int,
        visibility_ms: int,
        max_deliveries: int,
        maxlen: int | None,
        timeout: float | None,
    ) -> list[RawMessage]:
        keys = list(_keys(key))
        stream = keys[0]
        # The reclaim script (promote due delayed messages, reclaim expired leases) costs
        # the server as much as the read itself, and it usually finds nothing: after a run
        # that found nothing due, pops skip it for a while (until the next delayed message
        # this process knows of is due, at most the reclaim scan interval) as long as new
        # messages keep coming. A pop that finds no new message always runs it, so an idle
        # or polling consumer sees due and expired messages at once; a busy one within
        # the scan interval -- the same bound the server-side scan throttle already gives.
        if monotonic() < self._skip_until.get((stream, group), 0.0):
            found: list[RawMessage] = await self._grouped(
                key, group, lambda: self._read(stream, group, consumer, count)
            )
            if found:
                return found
        scan_ms = min(_SCAN_MAX_MS, max(10, visibility_ms // 10))
        reason = f"max_deliveries ({max_deliveries}) exceeded"
        args: list[Any] = [
            group,
            consumer,
            count,
            visibility_ms,
            max_deliveries,
            maxlen or 0,
            _PROMOTE_LIMIT,
            reason,
            # Expired leases are looked for at most this often: redelivery may come this
            # much after the visibility timeout, and idle pops stay cheap.
            scan_ms,
        ]
        deadline = None if timeout is None else time.monotonic() + timeout
        # Block in slices the socket timeout cannot cut short; between slices the reclaim
        # script runs again and picks up due delayed messages and expired leases.
        socket_timeout = self._b.socket_timeout
        cap = max(0.01, socket_timeout * 0.8) if socket_timeout else 1.0
        while True:
            taken: tuple[list[RawMessage], int, int] = await self._grouped(
                key, group, lambda: self._take(keys, args, consumer, count)
            )
            found, due, expiry = taken
            if found or timeout == 0:
                return found
            wait = cap
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                wait = min(wait, remaining)
            if due >= 0:
                wait = min(wait, due / 1000.0 + 0.002)
            if expiry >= 0:
                # The oldest in-flight entry's lease; others may expire sooner, so look
                # again at least four times per visibility timeout.
                wait = min(wait, min(expiry, visibility_ms / 4) / 1000.0 + 0.002)
            block_ms = max(1, round(wait * 1000))
            reply = await self._grouped(
                key,
                group,
                lambda ms=block_ms: self._b.run(  # type: ignore[misc]
                    lambda r: r.xreadgroup(group, consumer, {stream: ">"}, count=count, block=ms),
                    idempotent=True,
                ),
            )
            entries = _entries(reply)
            if entries:
                return _raws(entries, 1)

    async def ack(self, key: str, group: str, items: list[tuple[str, str | None]]) -> int:
        stream, _, _, ids, _ = _keys(key)
        mids: list[str] = []
        receipts: list[str] = []
        lookups: list[str] = []
        for mid, receipt in items:
            if receipt:
                mids.append(mid)
                receipts.append(receipt)
            else:
                lookups.append(mid)
        joined = ",".join(mids)
        if joined.count(",") != len(mids) - 1:
            # An id with a comma (a foreign entry's: kvkit's are hex) would shift the others;
            # it is sent empty, which is harmless: foreign entries are not in the id index.
            joined = ",".join("" if "," in mid else mid for mid in mids)
        args: list[Any] = [group, len(receipts), joined, ",".join(receipts), *lookups]
        try:
            # Retry-safe: a repeat finds the entries acknowledged (it may count 0).
            return int(await self._b.eval(ACK, [stream, ids], args, idempotent=True))
        except BackendError as exc:
            if _nogroup(exc):
                return 0
            raise

    async def nack(
        self,
        key: str,
        group: str,
        *,
        id: str,
        receipt: str | None,
        lease: int,
        delay_ms: int,
        max_deliveries: int,
        counted: bool,
        reason: str,
        maxlen: int | None,
    ) -> int:
        stream, delayed, dead, ids, _ = _keys(key)
        args: list[Any] = [
            group,
            id,
            receipt or "",
            lease,
            delay_ms,
            max_deliveries,
            "1" if counted else "0",
            reason,
            maxlen or 0,
        ]
        if delay_ms:
            self._delayed(stream, delay_ms)
        try:
            # Retry-safe: after a lost reply the retry finds the entry no longer leased.
            return int(
                await self._b.eval(NACK, [stream, delayed, dead, ids], args, idempotent=True)
            )
        except BackendError as exc:
            if _nogroup(exc):
                return 0
            raise

    async def extend(
        self, key: str, group: str, id: str, receipt: str | None, lease: int, idle_ms: int
    ) -> bool:
        stream, _, _, ids, _ = _keys(key)
        args: list[Any] = [group, id, receipt or "", lease, idle_ms]
        try:
            return bool(await self._b.eval(EXTEND, [stream, ids], args, idempotent=True))
        except BackendError as exc:
            if _nogroup(exc):
                return False
            raise

    async def dead_letter(self, key: str, group: str, receipt: str, reason: str) -> bool:
        stream, _, dead, ids, _ = _keys(key)
        try:
            return bool(
                await self._b.eval(
                    DEAD_LETTER, [stream, dead, ids], [group, receipt, reason], idempotent=True
                )
            )
        except BackendError as exc:
            if _nogroup(exc):
                return False
            raise

    # -- dead letters and housekeeping ---------------------------------------------------------
    async def dead_letters(self, key: str, count: int) -> list[RawMessage]:
        dead = _keys(key)[2]
        entries = await self._b.run(
            lambda r: r.xrange(dead, "-", "+", count=count), idempotent=True
        )
        out: list[RawMessage] = []
        for eid, fields in entries:
            # Listed whatever another process wrote here (data in Redis is input, not
            # trusted): fields that are not
            # what kvkit writes read as 0 (numbers) or escaped text, never as an error.
            mid = fields.get(b"id")
            reason = fields.get(b"reason")
            out.append(
                RawMessage(
                    _text(eid),
                    _text(eid) if mid is None else _field_text(mid),
                    fields.get(b"payload"),
                    _number(fields.get(b"enqueued_ms")) or 0,
                    _number(fields.get(b"deliveries")) or 0,
                    0,
                    "malformed dead letter: no reason" if reason is None else _field_text(reason),
                )
            )
        return out

    async def requeue_dead(self, key: str, ids: set[str] | None, maxlen: int | None) -> int:
        stream, _, dead, index, _ = _keys(key)
        wanted = sorted(ids) if ids is not None else []
        start = "-"
        moved = 0
        while True:
            args: list[Any] = [start, maxlen or 0, _REQUEUE_BATCH, "1" if ids is None else "0"]
            args.extend(wanted)
            # Not strictly idempotent (a repeat could move a later batch), but it only ever
            # moves dead letters back, which is what the caller asked for.
            count, start = await self._b.eval(REQUEUE, [stream, dead, index], args, idempotent=True)
            moved += int(count)
            start = _text(start)
            if not start or (ids is not None and moved >= len(wanted)):
                return moved

    async def purge(self, key: str, group: str, dead: bool) -> int:
        keys = [*_keys(key), f"{key}:gen"]
        return int(await self._b.eval(PURGE, keys, ["1" if dead else "0"], idempotent=True))

    async def stats(
        self, key: str, group: str, consumer_idle_ms: int, maxlen: int | None
    ) -> tuple[int, int, int, int, int, float | None]:
        stream, delayed, dead, ids, _ = _keys(key)
        args: list[Any] = [group, consumer_idle_ms, maxlen or 0]
        ready, pending, n_delayed, n_dead, consumers, oldest = await self._b.eval(
            STATS, [stream, delayed, dead, ids], args, idempotent=True
        )
        oldest_s = None if int(oldest) < 0 else int(oldest) / 1000.0
        return int(ready), int(pending), int(n_delayed), int(n_dead), int(consumers), oldest_s

    async def gc(self, key: str, group: str, consumer_idle_ms: int) -> None:
        await self._b.eval(GC, [_keys(key)[0]], [group, consumer_idle_ms], idempotent=True)
