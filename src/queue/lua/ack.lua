--[[
  Acknowledges messages of one user: each id in flight is removed from the
  in-flight list and deleted. Ids that are not in flight in this mailbox
  (already acked, never delivered, someone else's) are ignored. Records when
  the user last acked (the pop counts a missed ack as a delivery only when the
  page was acking meanwhile), and tells the other nodes holding the user's
  streams what was acked, so their tabs can drop it.

  Receipts and webhooks (when ARGV[6] asks for them): every acked message leaves a receipt
  (KEYS[6..7]) and the call one webhook outbox entry (KEYS[8]). Attempts and the first write
  come from the pending list read before the XACK: with one attempt the first write is now
  minus the idle time; with more, pop.lua or join.lua kept it in KEYS[9]. Costs, per call:
  one XPENDING over the acked range and one HMGET, plus six commands for the receipts and
  two for the outbox entry (the same whatever the number of ids).

  KEYS[1] mailbox stream
  KEYS[2] counted deliveries (hash: event id -> deliveries that counted)
  KEYS[3] when the user last acked (epoch ms)
  KEYS[4] registry of the nodes holding the user's streams
  KEYS[5] the user's sharded pub/sub channel
  KEYS[6] receipts (hash: event id -> receipt)
  KEYS[7] receipt times (sorted set)
  KEYS[8] webhook outbox (stream)
  KEYS[9] first writes of messages written more than once (hash: event id -> epoch ms)

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
-- Receipts and webhook events: the same block in ack.lua, pop.lua and expire.lua (keep the
-- copies alike; src/queue/receipts.ts documents the formats and decodes them).
local function receiptSpec(text)
  local keep, cap, events = string.match(text or '', '^(%d+) (%d+) (%S+)$')
  keep = tonumber(keep) or 0
  events = events or '-'
  return {keep = keep, cap = tonumber(cap) or 0, events = events, on = keep > 0 or events ~= '-'}
end

-- Redis's own clock, ms: a pending entry's idle time is measured on it, so a first write read
-- back as (this - idle) is the same whenever it is read, whatever the node's clock says.
local function serverMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Calls `cmd key list[i..]` in steps of 500 elements: unpack() has a stack limit.
local function each(cmd, key, list)
  for i = 1, #list, 500 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 499, #list)))
  end
end

-- items: {id, deliveries, attempts, first write (epoch ms, 0 = never written), reason or ''}.
-- Receipt: '<state>:<at - enqueued>:<deliveries>:<attempts>:<first write - enqueued or empty>:<reason>'.
local function settle(spec, rkeys, state, items, now)
  if #items == 0 then
    return
  end
  local rc, rt, outbox = rkeys[1], rkeys[2], rkeys[3]
  if spec.keep > 0 and state ~= 'f' then
    local fields, scores = {}, {}
    for _, it in ipairs(items) do
      local enqueued = tonumber(string.match(it[1], '^(%d+)'))
      local first = ''
      if it[4] > 0 then
        first = it[4] - enqueued
      end
      fields[#fields + 1] = it[1]
      fields[#fields + 1] = state .. ':' .. (now - enqueued) .. ':' .. it[2] .. ':' .. it[3] .. ':' .. first .. ':' .. it[5]
      scores[#scores + 1] = now
      scores[#scores + 1] = it[1]
    end
    each('HSET', rc, fields)
    each('ZADD', rt, scores)
    -- Bounded by age (at most 100 a call; the status read checks the age too) and by count.
    local old = redis.call('ZRANGE', rt, '-inf', now - spec.keep, 'BYSCORE', 'LIMIT', 0, 100)
    if #old > 0 then
      each('ZREM', rt, old)
      each('HDEL', rc, old)
    end
    local excess = redis.call('ZCARD', rt) - spec.cap
    if excess > 0 then
      each('HDEL', rc, redis.call('ZRANGE', rt, 0, excess - 1))
      redis.call('ZREMRANGEBYRANK', rt, 0, excess - 1)
    end
    redis.call('PEXPIRE', rc, spec.keep)
    redis.call('PEXPIRE', rt, spec.keep)
  end
  if string.find(spec.events, state, 1, true) then
    -- One entry per call and state; a node moves it into a webhook job (src/queue/webhook-outbox.ts).
    redis.call('XADD', outbox, 'MAXLEN', '~', 10000, '*', 't', state, 'at', now, 'n', #items, 'm', cjson.encode(items))
    redis.call('PEXPIRE', outbox, 86400000)
  end
end

local spec = receiptSpec(ARGV[6])
if redis.call('EXISTS', mailbox) == 0 then
  return {0, 0}
end

-- Stream ids `<ms>-<seq>` compared as numbers.
local function older(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if am ~= bm then
    return tonumber(am) < tonumber(bm)
  end
  return tonumber(as) < tonumber(bs)
end

local ids = {}
local pending = {} -- id -> XPENDING entry {id, consumer, idle, attempts}, with receipts on
if ARGV[2] ~= '' then
  for _, p in ipairs(redis.call('XPENDING', mailbox, group, '-', ARGV[2], 100000)) do
    ids[#ids + 1] = p[1]
    pending[p[1]] = p
  end
else
  local low, high
  for i = 7, #ARGV do
    local id = ARGV[i]
    ids[#ids + 1] = id
    if spec.on then
      if low == nil or older(id, low) then
        low = id
      end
      if high == nil or older(high, id) then
        high = id
      end
    end
  end
  if low ~= nil then
    for _, p in ipairs(redis.call('XPENDING', mailbox, group, low, high, 100000)) do
      pending[p[1]] = p
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
  local items, again = {}, {}
  for i, id in ipairs(done) do
    local p = pending[id]
    local attempts = 1
    local first = 0
    if p ~= nil then
      attempts = tonumber(p[4])
      if attempts <= 1 then
        first = serverMs() - tonumber(p[3])
      else
        again[#again + 1] = id
      end
    end
    -- The ack is a delivery too: the page had the message.
    items[i] = {id, (tonumber(counts[i]) or 0) + 1, attempts, first, ''}
  end
  if #again > 0 then
    local firsts = redis.call('HMGET', firstWrites, unpack(again))
    local at = {}
    for j, id in ipairs(again) do
      at[id] = tonumber(firsts[j]) or 0
    end
    for _, it in ipairs(items) do
      if at[it[1]] ~= nil then
        it[4] = at[it[1]]
      end
    end
    redis.call('HDEL', firstWrites, unpack(again))
  end
  settle(spec, rkeys, 'a', items, now)
end

redis.call('HDEL', counted, unpack(done))
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
