--[[
  Takes the messages to write to a user's streams now: first those in flight
  past the ack timeout (redeliveries), then new ones, up to the in-flight
  window. Expired messages are dropped; messages that used up their
  deliveries or attempts move to the dead letters.

  Attempts and deliveries: every write of a message is an attempt (the
  consumer group's delivery count). A missed ack counts as a delivery only
  when the page showed it had the message and did not handle it: the client
  reported a failure (nack.lua), or the user acked something after the
  message was last written (the page was alive and acking); not when the
  page said it has no handler for the event ('unhandled'). A message whose
  page acked nothing since (a stream nobody reads, a stalled socket) is not
  counted; when this node is the only one holding the user, its streams are
  closed instead of written to again, and the message waits for the next one.

  Several nodes: when the registry holds other nodes, only the holder of the
  drain lease pops, and it publishes what it writes on the user's channel for
  the others' streams. A publish that reaches no other node shows the
  registry's other entries are gone (a crashed node): they are removed.

  Receipts, webhooks, notices: with ARGV[11] asking for them, expired and dead messages leave
  receipts (KEYS[8..9]) and webhook outbox entries (KEYS[10]; one per state and call); every
  write keeps the message's first write time and attempts in KEYS[11] until it leaves the
  in-flight list (one HSET per pop for the new ones; ack.lua reads them), and first writes
  make a message.delivered entry when wanted. A message that expired before it was ever
  written is noted for the user's next stream (KEYS[12..13], always: rare and small).

  KEYS[1] mailbox stream
  KEYS[2] dead-letter stream
  KEYS[3] counted deliveries (hash: event id -> deliveries that counted)
  KEYS[4] when the user last acked (epoch ms)
  KEYS[5] registry of the nodes holding the user's streams
  KEYS[6] drain lease of the user
  KEYS[7] the user's sharded pub/sub channel
  KEYS[8] receipts (hash)
  KEYS[9] receipt times (list of '<epoch ms> <event id>', oldest first)
  KEYS[10] webhook outbox (stream)
  KEYS[11] first writes of messages in flight (hash: event id -> '<epoch ms>[:<attempts>]')
  KEYS[12] ids of messages that expired before their first write (list, newest first, at most 100)
  KEYS[13] how many did (string)

  ARGV[1] consumer group name
  ARGV[2] consumer name
  ARGV[3] now, epoch ms
  ARGV[4] ACK_TIMEOUT_MS
  ARGV[5] MAX_INFLIGHT
  ARGV[6] MAX_DELIVERIES
  ARGV[7] MAX_ATTEMPTS
  ARGV[8] dead letters kept (approximate MAXLEN)
  ARGV[9] node id
  ARGV[10] drain lease, ms
  ARGV[11] receipt spec '<retention ms> <receipts per user> <webhook event letters or ->' (src/queue/receipts.ts)

  Output: {status, inflight, more, expired, dead, nextDueMs, shared, waitMs, unresponsive,
           {id, event, data, attempts}, ...}
    status        0 no mailbox; 1 popped; 2 another node holds the lease (waitMs: for how long)
    more          1 when new messages may remain beyond the window
    nextDueMs     when the next in-flight message reaches the ack timeout, from now; -1 if none
    shared        1 when other nodes hold the user (what was popped was published)
    unresponsive  messages past the ack timeout on streams that acked nothing: close them
]]
local mailbox, deadKey, counted, ackat, registry, lease, channel =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local group, consumer = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
local ackTimeout = tonumber(ARGV[4])
local window = tonumber(ARGV[5])
local maxDeliveries = tonumber(ARGV[6])
local maxAttempts = tonumber(ARGV[7])
local node = ARGV[9]
local rkeys, firstWrites, missedIds, missedCount = {KEYS[8], KEYS[9], KEYS[10]}, KEYS[11], KEYS[12], KEYS[13]
--- @include "includes/first-writes.lua"
--- @include "includes/receipts.lua"

local spec = receiptSpec(ARGV[11])

if redis.call('EXISTS', mailbox) == 0 then
  return {0, 0, 0, 0, 0, -1, 0, 0, 0}
end

local others = redis.call('HLEN', registry) - redis.call('HEXISTS', registry, node)
local shared = 0
if others > 0 then
  shared = 1
  local holder = redis.call('GET', lease)
  if holder and holder ~= node then
    return {2, 0, 0, 0, 0, -1, 1, math.max(1, redis.call('PTTL', lease)), 0}
  end
  redis.call('SET', lease, node, 'PX', ARGV[10])
end

local out = {1, 0, 0, 0, 0, -1, shared, 0, 0}
local frames = {}
local expired, dead, unresponsive = 0, 0, 0
local nextDue = -1
local lastAck = tonumber(redis.call('GET', ackat) or '0')
local expiredItems, deadItems, firstItems, missed = {}, {}, {}, {}

local function fieldsOf(flat)
  local f = {}
  for i = 1, #flat, 2 do
    f[flat[i]] = flat[i + 1]
  end
  return f
end

local function drop(id)
  redis.call('XACK', mailbox, group, id)
  redis.call('XDEL', mailbox, id)
  redis.call('HDEL', counted, id, 'u:' .. id)
end

local function isExpired(f)
  return f.x ~= nil and tonumber(f.x) <= now
end

local function due(ms)
  if nextDue < 0 or ms < nextDue then
    nextDue = ms
  end
end

local function write(id, f, attempts)
  out[#out + 1] = {id, f.e, f.d, attempts}
  frames[#frames + 1] = {id = id, event = f.e, data = f.d}
end

-- Redeliveries, oldest first. XPENDING gives the idle time and attempts XAUTOCLAIM lacks.
local inflight = 0
for _, p in ipairs(redis.call('XPENDING', mailbox, group, '-', '+', window)) do
  local id, idle, attempts = p[1], tonumber(p[3]), tonumber(p[4])
  inflight = inflight + 1
  if idle < ackTimeout then
    due(ackTimeout - idle)
  else
    local entry = redis.call('XRANGE', mailbox, id, id)[1]
    if entry == nil then
      -- Deleted without its ack (cannot happen through postbox): just forget it.
      redis.call('XACK', mailbox, group, id)
      inflight = inflight - 1
    else
      local f = fieldsOf(entry[2])
      local deliveries = tonumber(redis.call('HGET', counted, id) or '0')
      local unhandled = redis.call('HEXISTS', counted, 'u:' .. id) == 1
      local acting = lastAck > now - idle
      if acting and not unhandled then
        deliveries = deliveries + 1
        redis.call('HSET', counted, id, deliveries)
      end
      if isExpired(f) then
        if spec.on then
          expiredItems[#expiredItems + 1] = {id, deliveries, attempts, firstWrite(firstWrites, id, idle, attempts), ''}
          redis.call('HDEL', firstWrites, id)
        end
        drop(id)
        expired = expired + 1
        inflight = inflight - 1
      elseif deliveries >= maxDeliveries or attempts >= maxAttempts then
        local reason = 'max-attempts'
        if deliveries >= maxDeliveries then
          reason = 'max-deliveries'
        elseif unhandled then
          reason = 'unhandled'
        end
        redis.call('XADD', deadKey, 'MAXLEN', '~', ARGV[8], '*',
          'id', id, 'e', f.e, 'd', f.d, 'n', deliveries, 'a', attempts, 'r', reason, 'at', now)
        drop(id)
        dead = dead + 1
        inflight = inflight - 1
        if spec.on then
          deadItems[#deadItems + 1] = {id, deliveries, attempts, firstWrite(firstWrites, id, idle, attempts), reason}
          redis.call('HDEL', firstWrites, id)
        end
      elseif not acting and shared == 0 then
        unresponsive = unresponsive + 1
      else
        if spec.on then
          -- The claim resets the idle time: the first write's time stays here, with the attempts.
          redis.call('HSET', firstWrites, id, firstWrite(firstWrites, id, idle, attempts) .. ':' .. (attempts + 1))
        end
        redis.call('XCLAIM', mailbox, group, consumer, 0, id, 'RETRYCOUNT', attempts + 1, 'JUSTID')
        redis.call('HDEL', counted, 'u:' .. id)
        write(id, f, attempts + 1)
        due(ackTimeout)
      end
    end
  end
end

local free = window - inflight
if free > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', free, 'STREAMS', mailbox, '>')
  if read then
    local entries = read[1][2]
    if #entries == free then
      out[3] = 1
    end
    for _, entry in ipairs(entries) do
      local f = fieldsOf(entry[2])
      if isExpired(f) then
        drop(entry[1])
        expired = expired + 1
        missed[#missed + 1] = entry[1]
        expiredItems[#expiredItems + 1] = {entry[1], 0, 0, 0, ''}
      else
        inflight = inflight + 1
        write(entry[1], f, 1)
        due(ackTimeout)
        if spec.on then
          firstItems[#firstItems + 1] = {entry[1], 0, 1, 0, ''}
        end
      end
    end
  end
end

if spec.on then
  settle(spec, rkeys, 'x', expiredItems, now)
  settle(spec, rkeys, 'd', deadItems, now)
  if #firstItems > 0 then
    -- First writes, for the receipts and webhooks of these messages: one HSET for the pop.
    local written, fields = serverMs(), {}
    local text = tostring(written)
    for _, it in ipairs(firstItems) do
      it[4] = written
      fields[#fields + 1] = it[1]
      fields[#fields + 1] = text
    end
    each('HSET', firstWrites, fields)
    if string.find(spec.events, 'f', 1, true) then
      settle(spec, rkeys, 'f', firstItems, now)
    end
  end
end
-- Oldest first, as XREADGROUP read them: join.lua hands them to the next stream.
noteMissed(missedIds, missedCount, missed)

if shared == 1 and #frames > 0 then
  local reached = redis.call('SPUBLISH', channel, cjson.encode({t = 'f', from = node, frames = frames}))
  if reached <= 1 then
    -- Only this node listens: the other registry entries are nodes that died holding the user.
    for _, other in ipairs(redis.call('HKEYS', registry)) do
      if other ~= node then
        redis.call('HDEL', registry, other)
      end
    end
    out[7] = 0
  end
end

out[2] = inflight
out[4] = expired
out[5] = dead
out[6] = nextDue
out[9] = unresponsive
return out
