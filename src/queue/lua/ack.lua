--[[
  Acknowledges messages of one user: each id in flight is removed from the
  in-flight list and deleted. Ids that are not in flight in this mailbox
  (already acked, never delivered, someone else's) are ignored. Records when
  the user last acked (the pop counts a missed ack as a delivery only when the
  page was acking meanwhile), and tells the other nodes holding the user's
  streams what was acked, so their tabs can drop it.

  KEYS[1] mailbox stream
  KEYS[2] counted deliveries (hash: event id -> deliveries that counted; 'u:' .. id while unhandled)
  KEYS[3] when the user last acked (epoch ms)
  KEYS[4] registry of the nodes holding the user's streams
  KEYS[5] the user's sharded pub/sub channel

  ARGV[1] consumer group name
  ARGV[2] '' to ack the ids ARGV[6..]; otherwise an id: ack everything in flight up to and including it
  ARGV[3] id of the node running this ack
  ARGV[4] MAX_INFLIGHT: an ack of a full window wakes the drain
  ARGV[5] now, epoch ms
  ARGV[6..] ids

  Output: {acked, wake, id1, id2, ...}
    acked  number of messages acknowledged, whose ids follow
    wake   1 when the window was full before: the drain of the calling node, if it holds the
           user, should run now (other nodes are told through the channel)
]]
local mailbox, counted, ackat, registry, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local group = ARGV[1]
if redis.call('EXISTS', mailbox) == 0 then
  return {0, 0}
end

local ids = {}
if ARGV[2] ~= '' then
  for _, p in ipairs(redis.call('XPENDING', mailbox, group, '-', ARGV[2], 100000)) do
    ids[#ids + 1] = p[1]
  end
else
  for i = 6, #ARGV do
    ids[#ids + 1] = ARGV[i]
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
