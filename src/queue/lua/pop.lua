--[[
  Takes the messages to write to a user's streams now: first those in flight
  for longer than the ack timeout (redeliveries), then new ones, up to the
  in-flight window. Expired messages are dropped; messages delivered
  MAX_DELIVERIES times move to the dead letters.

  KEYS[1] mailbox stream
  KEYS[2] dead-letter stream

  ARGV[1] consumer group name
  ARGV[2] consumer name
  ARGV[3] now, epoch ms
  ARGV[4] minimum idle time of an in-flight message before it is delivered again, ms
  ARGV[5] MAX_INFLIGHT
  ARGV[6] MAX_DELIVERIES
  ARGV[7] dead letters kept (approximate MAXLEN)

  Output: {inflight, more, expired, dead, {id, event, data, deliveries}, ...}
    inflight  messages in flight after this call
    more      1 when new messages may remain beyond the window
]]
local mailbox, deadKey = KEYS[1], KEYS[2]
local group, consumer = ARGV[1], ARGV[2]
local now = tonumber(ARGV[3])
local minIdle = ARGV[4]
local window = tonumber(ARGV[5])
local maxDeliveries = tonumber(ARGV[6])

if redis.call('EXISTS', mailbox) == 0 then
  return {0, 0, 0, 0}
end

local out = {0, 0, 0, 0}
local expired, dead = 0, 0

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
end

local function isExpired(f)
  return f.x ~= nil and tonumber(f.x) <= now
end

-- Redeliveries, oldest first. XPENDING gives the delivery count XAUTOCLAIM lacks.
local stale = redis.call('XPENDING', mailbox, group, 'IDLE', minIdle, '-', '+', window)
for _, p in ipairs(stale) do
  local id, deliveries = p[1], tonumber(p[4])
  if deliveries >= maxDeliveries then
    local entry = redis.call('XRANGE', mailbox, id, id)[1]
    if entry then
      local f = fieldsOf(entry[2])
      redis.call('XADD', deadKey, 'MAXLEN', '~', ARGV[7], '*',
        'id', id, 'e', f.e, 'd', f.d, 'n', deliveries, 'r', 'max-deliveries', 'at', now)
      dead = dead + 1
    end
    drop(id)
  else
    local claimed = redis.call('XCLAIM', mailbox, group, consumer, 0, id)[1]
    if claimed then
      local f = fieldsOf(claimed[2])
      if isExpired(f) then
        drop(id)
        expired = expired + 1
      else
        out[#out + 1] = {id, f.e, f.d, deliveries + 1}
      end
    end
  end
end

local inflight = redis.call('XPENDING', mailbox, group)[1]
local free = window - inflight
if free > 0 then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', free, 'STREAMS', mailbox, '>')
  if read then
    local entries = read[1][2]
    if #entries == free then
      out[2] = 1
    end
    for _, entry in ipairs(entries) do
      local f = fieldsOf(entry[2])
      if isExpired(f) then
        drop(entry[1])
        expired = expired + 1
      else
        out[#out + 1] = {entry[1], f.e, f.d, 1}
      end
    end
  end
  inflight = redis.call('XPENDING', mailbox, group)[1]
end

out[1] = inflight
out[3] = expired
out[4] = dead
return out
