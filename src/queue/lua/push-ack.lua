--[[
  Acknowledges one message of a user through the ack credential of its Web
  Push: like ack.lua, but the message may also be waiting (never written to a
  stream: the usual case of a push, sent while the user had no stream), and
  it leaves the user's last-ack time alone (ack.lua sets it): the click came
  from a notification, which says nothing about whether a page is alive and
  acking, the sign by which pop.lua counts missed acks as deliveries.

  Receipts and webhooks (when ARGV[6] asks for them), as ack.lua: the message leaves a receipt
  (KEYS[5..6]) and one webhook outbox entry (KEYS[7]); its first write is forgotten (KEYS[8]).
  The click counts as a delivery. A message still waiting was never written: its receipt has
  no attempts and no first write.

  KEYS[1] mailbox stream
  KEYS[2] counted deliveries (hash: event id -> deliveries that counted; 'u:' .. id while unhandled)
  KEYS[3] registry of the nodes holding the user's streams
  KEYS[4] the user's sharded pub/sub channel
  KEYS[5] receipts (hash: event id -> receipt)
  KEYS[6] receipt times (list of '<epoch ms> <event id>', oldest first)
  KEYS[7] webhook outbox (stream)
  KEYS[8] first writes of messages in flight (hash: event id -> '<epoch ms>[:<attempts>]')

  ARGV[1] consumer group name
  ARGV[2] event id
  ARGV[3] id of the node running this ack
  ARGV[4] MAX_INFLIGHT: an ack of a full window wakes the drain
  ARGV[5] now, epoch ms
  ARGV[6] receipt spec '<retention ms> <receipts per user> <webhook event letters or ->' (src/queue/receipts.ts)

  Output: {acked, wake}
    acked  1 when the message was in the mailbox and is now gone, 0 otherwise
    wake   1 when it was in flight in a full window (as ack.lua)
]]
local mailbox, counted, registry, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local rkeys, firstWrites = {KEYS[5], KEYS[6], KEYS[7]}, KEYS[8]
local group, id, node = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(ARGV[5])
--- @include "includes/first-writes.lua"
--- @include "includes/receipts.lua"

local spec = receiptSpec(ARGV[6])
if #redis.call('XRANGE', mailbox, id, id) == 0 then
  return {0, 0}
end

-- In flight: its pending entry {id, consumer, idle, attempts}; waiting: none.
local pending
if spec.on then
  pending = redis.call('XPENDING', mailbox, group, id, id, 1)[1]
end

local wake = 0
local before = redis.call('XPENDING', mailbox, group)[1]
if redis.call('XACK', mailbox, group, id) == 1 and before >= tonumber(ARGV[4]) then
  wake = 1
end
-- A waiting entry is simply deleted: the group's reads skip deleted entries.
redis.call('XDEL', mailbox, id)

if spec.on then
  local first, attempts = 0, 0
  if pending ~= nil then
    attempts = tonumber(pending[4])
    first = firstWrite(firstWrites, id, tonumber(pending[3]), attempts)
  end
  -- The ack is a delivery too: the user had the message, in the notification.
  local deliveries = (tonumber(redis.call('HGET', counted, id)) or 0) + 1
  redis.call('HDEL', firstWrites, id)
  settle(spec, rkeys, 'a', {{id, deliveries, attempts, first, ''}}, now)
end
redis.call('HDEL', counted, id, 'u:' .. id)

local holders = redis.call('HLEN', registry)
if holders > 1 or (holders == 1 and redis.call('HEXISTS', registry, node) == 0) then
  redis.call('SPUBLISH', channel, cjson.encode({t = 'a', from = node, ids = {id}, wake = wake}))
end
return {1, wake}
