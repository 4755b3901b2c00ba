--[[
  Housekeeping of one mailbox: drops the messages past their TTL (field `x`,
  expiry epoch ms), in flight or not, scanning at most ARGV[4] entries per
  call so Redis is never blocked for long; then, when the scan has reached the
  end, deletes the mailbox if it is empty and has had no new entry for
  ARGV[5] ms (the next enqueue recreates it with its consumer group).

  KEYS[1] mailbox stream

  ARGV[1] consumer group name
  ARGV[2] now, epoch ms
  ARGV[3] first entry to look at: '-' for the start, or '(<id>' to continue after <id>
  ARGV[4] most entries to scan in this call
  ARGV[5] idle time after which an empty mailbox is deleted, ms ('0': never)

  Output: {expired, next, deleted}
    expired  messages dropped
    next     '' when the scan reached the end, else the ARGV[3] of the next call
    deleted  1 when the empty mailbox was deleted
]]
local mailbox, group = KEYS[1], ARGV[1]
local now = tonumber(ARGV[2])
local limit = tonumber(ARGV[4])

if redis.call('EXISTS', mailbox) == 0 then
  return {0, '', 0}
end

local expired = 0
local entries = redis.call('XRANGE', mailbox, ARGV[3], '+', 'COUNT', limit)
for _, entry in ipairs(entries) do
  local flat = entry[2]
  for i = 1, #flat, 2 do
    if flat[i] == 'x' then
      if tonumber(flat[i + 1]) <= now then
        redis.call('XACK', mailbox, group, entry[1])
        redis.call('XDEL', mailbox, entry[1])
        expired = expired + 1
      end
      break
    end
  end
end

if #entries == limit then
  return {expired, '(' .. entries[#entries][1], 0}
end

local deleted = 0
if ARGV[5] ~= '0' and redis.call('XLEN', mailbox) == 0 then
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
  if pending == 0 and lastMs + tonumber(ARGV[5]) <= now then
    redis.call('DEL', mailbox)
    deleted = 1
  end
end
return {expired, '', deleted}
