--[[
  Purges one user's queue: every waiting and in-flight message and every dead
  letter. The mailbox is recreated empty with its consumer group, so the user
  still reads as known (all zeros) and the next enqueue works as usual.

  KEYS[1] mailbox stream
  KEYS[2] dead-letter stream
  KEYS[3] counted deliveries of the in-flight messages

  ARGV[1] consumer group name

  Output: {known, waiting, inflight, dead}
    known  0 when the user had neither a mailbox nor dead letters (nothing changed)
    the rest: how many messages were removed
]]
local mailbox, deadKey, group = KEYS[1], KEYS[2], ARGV[1]
local waiting, inflight = 0, 0
local existed = redis.call('EXISTS', mailbox) == 1

if existed then
  local length = redis.call('XLEN', mailbox)
  local summary = redis.pcall('XPENDING', mailbox, group)
  if type(summary) == 'table' and summary[1] ~= nil then
    inflight = tonumber(summary[1]) or 0
  end
  waiting = length - inflight
end
local dead = redis.call('XLEN', deadKey)
if not existed and dead == 0 then
  return {0, 0, 0, 0}
end

redis.call('DEL', mailbox, deadKey, KEYS[3])
redis.call('XGROUP', 'CREATE', mailbox, group, '0', 'MKSTREAM')
return {1, waiting, inflight, dead}
