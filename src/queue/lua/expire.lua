--[[
  Housekeeping of one mailbox: drops the messages past their TTL, in flight or
  not, found through the user's expiries set (written by enqueue.lua), at most
  ARGV[3] per call so Redis is never blocked for long; then, once none are
  left, deletes the mailbox if it is empty and has had no new entry for
  ARGV[4] ms (the next enqueue recreates it with its consumer group).
  A mailbox whose messages carry no TTL costs one EXISTS and one XLEN.

  KEYS[1] mailbox stream
  KEYS[2] expiries: sorted set, score = expiry epoch ms, member = event id
  KEYS[3] counted deliveries (hash: event id -> deliveries)
  KEYS[4] when the user last acked

  ARGV[1] consumer group name
  ARGV[2] now, epoch ms
  ARGV[3] most expired entries to handle in this call
  ARGV[4] idle time after which an empty mailbox is deleted, ms ('0': never)

  Output: {expired, more, gone}
    expired  messages dropped (entries already acked or gone are not counted)
    more     1 when more expired entries may remain: call again
    gone     1 when the mailbox was deleted now, or did not exist: the user may leave the users index
]]
local mailbox, expiries, counted, group = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local now = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])

if redis.call('EXISTS', mailbox) == 0 then
  redis.call('DEL', expiries, counted, KEYS[4])
  return {0, 0, 1}
end

local expired = 0
local due = redis.call('ZRANGE', expiries, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
for _, id in ipairs(due) do
  redis.call('XACK', mailbox, group, id)
  expired = expired + redis.call('XDEL', mailbox, id)
end
if #due > 0 then
  redis.call('ZREM', expiries, unpack(due))
  redis.call('HDEL', counted, unpack(due))
  for _, id in ipairs(due) do
    redis.call('HDEL', counted, 'u:' .. id)
  end
end
if #due == limit then
  return {expired, 1, 0}
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
    redis.call('DEL', mailbox, expiries, counted, KEYS[4])
    deleted = 1
  end
end
return {expired, 0, deleted}
