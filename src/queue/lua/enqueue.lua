--[[
  Appends one message to a user's mailbox and wakes the nodes delivering to
  the user.

  KEYS[1] mailbox stream
  KEYS[2] idempotency record of this message's key (unused when ARGV[6] is '0')
  KEYS[3] expiries of the user's messages (used when ARGV[5] is not '0'), for housekeeping
  KEYS[4] registry of the nodes holding the user's streams (hash: node id -> since)
  KEYS[5] the user's sharded pub/sub channel (same hash slot)

  ARGV[1] consumer group name
  ARGV[2] QUEUE_MAX_LENGTH
  ARGV[3] event name
  ARGV[4] data, as JSON text
  ARGV[5] expiry, epoch ms ('0' = never)
  ARGV[6] '1' when the message carries an idempotency key
  ARGV[7] dedup window, ms
  ARGV[8] id of the node running this enqueue
  ARGV[9] the message's Web Push option as JSON, stored as field `p` ('' = none; read by push-due.lua)

  Output: {1, id, created, local} added:
            created  1 when this call created the mailbox
            local    1 when the calling node is the only one holding the user's streams: it wakes
                     its own drain and nothing is published; otherwise the id is published on
                     the channel when any node holds the user
          {0, id} the key was seen within the window, id is the first one;
          {-1, length} the mailbox is full.
]]
local mailbox, registry, channel = KEYS[1], KEYS[4], KEYS[5]

if ARGV[6] == '1' then
  local first = redis.call('GET', KEYS[2])
  if first then
    return {0, first}
  end
end

local created = 0
if redis.call('EXISTS', mailbox) == 0 then
  -- The group reads from the very start of the stream; MKSTREAM creates it empty.
  redis.call('XGROUP', 'CREATE', mailbox, ARGV[1], '0', 'MKSTREAM')
  created = 1
else
  local length = redis.call('XLEN', mailbox)
  if length >= tonumber(ARGV[2]) then
    return {-1, length}
  end
end

local entry = {'e', ARGV[3], 'd', ARGV[4]}
if ARGV[5] ~= '0' then
  entry[#entry + 1] = 'x'
  entry[#entry + 1] = ARGV[5]
end
if ARGV[9] ~= nil and ARGV[9] ~= '' then
  entry[#entry + 1] = 'p'
  entry[#entry + 1] = ARGV[9]
end
local id = redis.call('XADD', mailbox, '*', unpack(entry))
if ARGV[5] ~= '0' then
  -- Housekeeping reads this instead of scanning whole mailboxes for expired entries.
  redis.call('ZADD', KEYS[3], ARGV[5], id)
end

if ARGV[6] == '1' then
  redis.call('SET', KEYS[2], id, 'PX', ARGV[7])
end

local holders = redis.call('HLEN', registry)
local isLocal = 0
if holders == 1 and redis.call('HEXISTS', registry, ARGV[8]) == 1 then
  isLocal = 1
elseif holders > 0 then
  redis.call('SPUBLISH', channel, id)
end
return {1, id, created, isLocal}
