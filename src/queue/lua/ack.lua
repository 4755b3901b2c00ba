--[[
  Acknowledges messages of one user: each id in flight is removed from the
  in-flight list and deleted. Ids that are not in flight in this mailbox
  (already acked, never delivered, someone else's) are ignored. Records when
  the user last acked (the pop counts a missed ack as a delivery only when the
  page was acking meanwhile), and tells the other nodes holding the user's
  streams what was acked, so their tabs can drop it.

  Receipts and webhooks (when ARGV[6] asks for them): every acked message leaves a receipt
  (KEYS[6..7]) and the call one webhook outbox entry (KEYS[8]). The first write and the
  attempts come from KEYS[9], where pop.lua and join.lua keep them for messages in flight
  (the pending list is read only for one written before receipts were on). Costs, per call
  whatever the number of ids: HMGET and HDEL of the first writes, HMGET of the counts, six
  commands for the receipts (HSET, RPUSH, LINDEX, LLEN, 2 PEXPIRE; trims add LRANGE, LTRIM,
  HDEL) and two for the outbox entry (XADD, PEXPIRE).

  KEYS[1] mailbox stream
  KEYS[2] counted deliveries (hash: event id -> deliveries that counted; 'u:' .. id while unhandled)
  KEYS[3] when the user last acked (epoch ms)
  KEYS[4] registry of the nodes holding the user's streams
  KEYS[5] the user's sharded pub/sub channel
  KEYS[6] receipts (hash: event id -> receipt)
  KEYS[7] receipt times (list of '<epoch ms> <event id>', oldest first)
  KEYS[8] webhook outbox (stream)
  KEYS[9] first writes of messages in flight (hash: event id -> '<epoch ms>[:<attempts>]')

  ARGV[1] consumer group name
  ARGV[2] '' to ack the ids ARGV[7..]; otherwise an id: ack everything in flight up to and including it
  ARGV[3] id of the node running this ack
  ARGV[4] MAX_INFLIGHT: an ack of a full window wakes the drain
  ARGV[5] now, epoch ms
  ARGV[6] receipt spec '<retention ms> <receipts per user> <webhook event letters or ->' (src/queue/receipts.ts)
  ARGV[7..] ids

  Output: {acked, wake, id1, id2, ...}
    acked  number of messages acknowledged, whose ids follow
    wake   1 when the window was full before: the drain of the calling node, if it holds the
           user, should run now (other nodes are told through the channel)
]]
local mailbox, counted, ackat, registry, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local rkeys, firstWrites = {KEYS[6], KEYS[7], KEYS[8]}, KEYS[9]
local group = ARGV[1]
local now = tonumber(ARGV[5])
--- @include "includes/first-writes.lua"
--- @include "includes/receipts.lua"

local spec = receiptSpec(ARGV[6])
if redis.call('EXISTS', mailbox) == 0 then
  return {0, 0}
end

local ids = {}
local pending = {} -- id -> XPENDING entry {id, consumer, idle, attempts}
if ARGV[2] ~= '' then
  for _, p in ipairs(redis.call('XPENDING', mailbox, group, '-', ARGV[2], 100000)) do
    ids[#ids + 1] = p[1]
    pending[p[1]] = p
  end
else
  for i = 7, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end

-- First writes and attempts, kept by pop.lua and join.lua for every message they write; the
-- pending list (one lookup per id) only for a message written before receipts were on.
local written = {}
if spec.on then
  for i = 1, #ids, 500 do
    local chunk = {unpack(ids, i, math.min(i + 499, #ids))}
    local values = redis.call('HMGET', firstWrites, unpack(chunk))
    for j, id in ipairs(chunk) do
      written[id] = values[j]
      if not values[j] and pending[id] == nil then
        pending[id] = redis.call('XPENDING', mailbox, group, id, id, 1)[1]
      end
    end
  end
end

local before = redis.call('XPENDING', mailbox, group)[1]
local done = {}
for _, id in ipairs(ids) do
  if redis.call('XACK', mailbox, group, id) == 1 then
    redis.call('XDEL', mailbox, id)
    done[#done + 1] = id
  end
end
if #done == 0 then
  return {0, 0}
end

if spec.on then
  local counts = redis.call('HMGET', counted, unpack(done))
  local items = {}
  for i, id in ipairs(done) do
    local first, attempts = parseFirst(written[id])
    local p = pending[id]
    if p ~= nil then
      attempts = tonumber(p[4])
      if first == nil and attempts == 1 then
        first = serverMs() - tonumber(p[3])
      end
    end
    -- The ack is a delivery too: the page had the message.
    items[i] = {id, (tonumber(counts[i]) or 0) + 1, attempts or 1, first or 0, ''}
  end
  each('HDEL', firstWrites, done)
  settle(spec, rkeys, 'a', items, now)
end

local fields = {}
for _, id in ipairs(done) do
  fields[#fields + 1] = id
  fields[#fields + 1] = 'u:' .. id
end
redis.call('HDEL', counted, unpack(fields))
redis.call('SET', ackat, ARGV[5])
local wake = 0
if before >= tonumber(ARGV[4]) then
  wake = 1
end
local holders = redis.call('HLEN', registry)
if holders > 1 or (holders == 1 and redis.call('HEXISTS', registry, ARGV[3]) == 0) then
  redis.call('SPUBLISH', channel, cjson.encode({t = 'a', from = ARGV[3], ids = done, wake = wake}))
end
return {#done, wake, unpack(done)}
