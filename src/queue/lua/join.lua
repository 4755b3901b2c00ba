--[[
  A stream of the user opened on a node: registers the node (for its first
  stream of the user) and returns what is in flight, for the node to write to
  the new stream before anything else. Together with pop.lua this is why no
  tab misses a message: a pop that ran before this join left its messages in
  flight, returned here (unless acked before the stream opened); a pop after
  it sees this node in the registry and publishes what it writes, and the
  node is already subscribed to the user's channel when it joins.

  Notices (ARGV[9] '1', the stream asked for them): the counts of the user's queue (as the
  admin counts them, admin-counts.lua: messages past their TTL are neither waiting nor in
  flight; at most ARGV[10] of them are looked at), and the
  messages that expired before they were ever written (pop.lua, expire.lua), which are taken:
  the next stream that asks does not get them again. A claim keeps the message's first write
  time and attempts (ARGV[8] '1'), as pop.lua's redeliveries do.

  KEYS[1] mailbox stream
  KEYS[2] registry of the nodes holding the user's streams (hash: node id -> since, Redis time ms)
  KEYS[3] first writes of messages in flight (hash: event id -> '<epoch ms>[:<attempts>]')
  KEYS[4] ids of messages that expired before their first write (list, newest first)
  KEYS[5] how many did (string)
  KEYS[6] counted deliveries (a claim is a new attempt: 'u:' .. id, unhandled, is cleared)
  KEYS[7] expiries (sorted set, score = expiry epoch ms, member = event id)

  ARGV[1] consumer group name
  ARGV[2] consumer name
  ARGV[3] node id
  ARGV[4] '1' to register the node (its first stream of the user)
  ARGV[5] '1' to claim the in-flight messages when no other node holds the user: they were
          written to streams now closed, so writing them again is a new attempt with a new
          ack timeout
  ARGV[6] MAX_INFLIGHT
  ARGV[7] now, epoch ms (expired messages are left for the pop to drop)
  ARGV[8] '1' when receipts or webhooks are on: keep first write times
  ARGV[9] '1' to return the notices
  ARGV[10] most expired ids examined for the counts

  Output: {others, notices, {id, event, data, attempts, idleMs}, ...}
    others   nodes other than this one holding the user
    notices  {} unless asked; else {waiting, inflight, expiredCount, {expiredId, ...}}, ids oldest first
]]
--- @include "includes/first-writes.lua"
--- @include "includes/expired-counts.lua"

local mailbox, registry = KEYS[1], KEYS[2]
local group, consumer, node = ARGV[1], ARGV[2], ARGV[3]
local now = tonumber(ARGV[7])

if ARGV[4] == '1' then
  redis.call('HSET', registry, node, serverMs())
end
local others = redis.call('HLEN', registry) - redis.call('HEXISTS', registry, node)
local notices = {}
local out = {others, notices}
if ARGV[9] == '1' then
  local count = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
  local ids = {}
  if count > 0 then
    local newest = redis.call('LRANGE', KEYS[4], 0, 99)
    for i = #newest, 1, -1 do
      ids[#ids + 1] = newest[i]
    end
    redis.call('DEL', KEYS[4], KEYS[5])
  end
  notices[1], notices[2], notices[3], notices[4] = 0, 0, count, ids
  if redis.call('EXISTS', mailbox) == 1 then
    local inflight = redis.call('XPENDING', mailbox, group)[1]
    local expiredWaiting, expiredInflight = expiredCounts(mailbox, KEYS[7], group, true, now, tonumber(ARGV[10]))
    notices[1] = math.max(0, redis.call('XLEN', mailbox) - inflight - expiredWaiting)
    notices[2] = math.max(0, inflight - expiredInflight)
  end
end
if redis.call('EXISTS', mailbox) == 0 then
  return out
end

local claim = ARGV[5] == '1' and others == 0
for _, p in ipairs(redis.call('XPENDING', mailbox, group, '-', '+', tonumber(ARGV[6]))) do
  local id, idle, attempts = p[1], tonumber(p[3]), tonumber(p[4])
  local entry = redis.call('XRANGE', mailbox, id, id)[1]
  if entry then
    local f = {}
    for i = 1, #entry[2], 2 do
      f[entry[2][i]] = entry[2][i + 1]
    end
    if f.x == nil or tonumber(f.x) > now then
      if claim then
        if ARGV[8] == '1' then
          -- As pop.lua's redeliveries: the first write stays, with the attempts (the claim resets
          -- the idle time).
          redis.call('HSET', KEYS[3], id, firstWrite(KEYS[3], id, idle, attempts) .. ':' .. (attempts + 1))
        end
        redis.call('XCLAIM', mailbox, group, consumer, 0, id, 'RETRYCOUNT', attempts + 1, 'JUSTID')
        redis.call('HDEL', KEYS[6], 'u:' .. id)
        attempts = attempts + 1
        idle = 0
      end
      out[#out + 1] = {id, f.e, f.d, attempts, idle}
    end
  end
end
return out
