--[[
  Housekeeping of one mailbox: drops the messages past their TTL, in flight or
  not, found through the user's expiries set (written by enqueue.lua), at most
  ARGV[3] per call so Redis is never blocked for long; then, once none are
  left, deletes the mailbox if it is empty and has had no new entry for
  ARGV[4] ms (the next enqueue recreates it with its consumer group).
  A mailbox whose messages carry no TTL costs one EXISTS and two XLEN (its own and its outbox's).

  Receipts, webhooks, notices (as pop.lua): with ARGV[5] asking for them, every dropped message
  leaves a receipt and the call one webhook outbox entry; one that was never written is noted
  for the user's next stream. With them on, one XPENDING per expired message, before its XACK,
  gives its attempts (housekeeping is not the hot path). The output's fourth value lets the
  sweep find outbox entries that a node which stopped left behind.

  KEYS[1] mailbox stream
  KEYS[2] expiries: sorted set, score = expiry epoch ms, member = event id
  KEYS[3] counted deliveries (hash: event id -> deliveries)
  KEYS[4] when the user last acked
  KEYS[5] receipts (hash)
  KEYS[6] receipt times (list of '<epoch ms> <event id>', oldest first)
  KEYS[7] webhook outbox (stream)
  KEYS[8] first writes of messages in flight (hash: event id -> '<epoch ms>[:<attempts>]')
  KEYS[9] ids of messages that expired before their first write (list, newest first, at most 100)
  KEYS[10] how many did (string)

  ARGV[1] consumer group name
  ARGV[2] now, epoch ms
  ARGV[3] most expired entries to handle in this call
  ARGV[4] idle time after which an empty mailbox is deleted, ms ('0': never)
  ARGV[5] receipt spec '<retention ms> <receipts per user> <webhook event letters or ->' (src/queue/receipts.ts)

  Output: {expired, more, gone, outbox}
    expired  messages dropped (entries already acked or gone are not counted)
    more     1 when more expired entries may remain: call again
    gone     1 when the mailbox was deleted now, or did not exist: the user may leave the users index
    outbox   webhook outbox entries waiting (0 when none)
]]
local mailbox, expiries, counted, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local now = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local rkeys, firstWrites, missedIds, missedCount = {KEYS[5], KEYS[6], KEYS[7]}, KEYS[8], KEYS[9], KEYS[10]
--- @include "includes/first-writes.lua"
--- @include "includes/receipts.lua"

local spec = receiptSpec(ARGV[5])

if redis.call('EXISTS', mailbox) == 0 then
  redis.call('DEL', expiries, counted, KEYS[4], firstWrites)
  return {0, 0, 1, redis.call('XLEN', rkeys[3])}
end

local expired = 0
local items, missed = {}, {}
local due = redis.call('ZRANGE', expiries, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  local p = nil
  if spec.on then
    p = redis.call('XPENDING', mailbox, group, id, id, 1)[1]
  end
  local written = redis.call('XACK', mailbox, group, id) == 1
  if redis.call('XDEL', mailbox, id) == 1 then
    expired = expired + 1
    if not written then
      missed[#missed + 1] = id
      items[#items + 1] = {id, 0, 0, 0, ''}
    elseif p ~= nil then
      local attempts = tonumber(p[4])
      local first = firstWrite(firstWrites, id, tonumber(p[3]), attempts)
      items[#items + 1] = {id, tonumber(redis.call('HGET', counted, id) or '0') or 0, attempts, first, ''}
    end
  end
end
if #due > 0 then
  redis.call('ZREM', expiries, unpack(due))
  redis.call('HDEL', counted, unpack(due))
  for _, id in ipairs(due) do
    redis.call('HDEL', counted, 'u:' .. id)
  end
  if spec.on then
    redis.call('HDEL', firstWrites, unpack(due))
  end
end
if spec.on then
  settle(spec, rkeys, 'x', items, now)
end
if #missed > 0 then
  -- noteMissed wants them oldest first (join.lua hands them to the next stream). The expiries
  -- set orders equal expiry times by member text ('1-10' before '1-2'): sort as stream ids.
  table.sort(missed, function(a, b)
    local am, as = string.match(a, '^(%d+)-(%d+)$')
    local bm, bs = string.match(b, '^(%d+)-(%d+)$')
    if am ~= bm then
      return tonumber(am) < tonumber(bm)
    end
    return tonumber(as) < tonumber(bs)
  end)
  noteMissed(missedIds, missedCount, missed)
end
if #due == limit then
  return {expired, 1, 0, redis.call('XLEN', rkeys[3])}
end

local deleted = 0
if ARGV[4] ~= '0' and redis.call('XLEN', mailbox) == 0 then
  local info = redis.call('XINFO', 'STREAM', mailbox)
  local last = '0-0'
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then
      last = info[i + 1]
    end
  end
  -- Nothing in flight either (acks delete their entries, so this is a safety check).
  local pending = redis.call('XPENDING', mailbox, group)[1]
  local lastMs = tonumber(string.match(last, '^(%d+)'))
  if pending == 0 and lastMs + tonumber(ARGV[4]) <= now then
    -- Expiries of messages acked before they expired are all that can be left.
    redis.call('DEL', mailbox, expiries, counted, KEYS[4], firstWrites)
    deleted = 1
  end
end
return {expired, 0, deleted, redis.call('XLEN', rkeys[3])}
