--[[
  Acknowledges one message of a user through the ack credential of its Web
  Push: like ack.lua, but the message may also be waiting (never written to a
  stream: the usual case of a push, sent while the user had no stream), and
  it leaves the user's last-ack time alone (ack.lua sets it): the click came
  from a notification, which says nothing about whether a page is alive and
  acking, the sign by which pop.lua counts missed acks as deliveries.

  KEYS[1] mailbox stream
  KEYS[2] counted deliveries (hash: event id -> deliveries that counted)
  KEYS[3] registry of the nodes holding the user's streams
  KEYS[4] the user's sharded pub/sub channel

  ARGV[1] consumer group name
  ARGV[2] event id
  ARGV[3] id of the node running this ack
  ARGV[4] MAX_INFLIGHT: an ack of a full window wakes the drain

  Output: {acked, wake}
    acked  1 when the message was in the mailbox and is now gone, 0 otherwise
    wake   1 when it was in flight in a full window (as ack.lua)
]]
local mailbox, counted, registry, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group, id, node = ARGV[1], ARGV[2], ARGV[3]
if #redis.call('XRANGE', mailbox, id, id) == 0 then
  return {0, 0}
end

local wake = 0
local before = redis.call('XPENDING', mailbox, group)[1]
if redis.call('XACK', mailbox, group, id) == 1 and before >= tonumber(ARGV[4]) then
  wake = 1
end
-- A waiting entry is simply deleted: the group's reads skip deleted entries.
redis.call('XDEL', mailbox, id)
redis.call('HDEL', counted, id)

local holders = redis.call('HLEN', registry)
if holders > 1 or (holders == 1 and redis.call('HEXISTS', registry, node) == 0) then
  redis.call('SPUBLISH', channel, cjson.encode({t = 'a', from = node, ids = {id}, wake = wake}))
end
return {1, wake}
