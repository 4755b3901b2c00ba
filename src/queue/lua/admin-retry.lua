--[[
  Moves dead letters back into the user's mailbox. Each one is appended as a
  new message (a new, current event id, so it queues behind what is waiting)
  and deleted from the dead letters in the same step: a crash cannot leave it
  in both places or in neither. Stops when the mailbox holds QUEUE_MAX_LENGTH.

  KEYS[1] mailbox stream
  KEYS[2] dead-letter stream
  KEYS[3] registry of the nodes holding the user's streams
  KEYS[4] the user's sharded pub/sub channel, on which the first new id wakes them

  ARGV[1] consumer group name
  ARGV[2] QUEUE_MAX_LENGTH
  ARGV[3..] entry ids in the dead-letter stream (not the original event ids)

  Output: {full, newId1, newId2, ...}
    full  1 when the mailbox filled up before every entry was moved
]]
local mailbox, deadKey, group = KEYS[1], KEYS[2], ARGV[1]
local maxLength = tonumber(ARGV[2])
local out = {0}

if redis.call('EXISTS', mailbox) == 0 then
  redis.call('XGROUP', 'CREATE', mailbox, group, '0', 'MKSTREAM')
end

for i = 3, #ARGV do
  local entry = redis.call('XRANGE', deadKey, ARGV[i], ARGV[i])[1]
  if entry then
    if redis.call('XLEN', mailbox) >= maxLength then
      out[1] = 1
      break
    end
    local f = {}
    for j = 1, #entry[2], 2 do
      f[entry[2][j]] = entry[2][j + 1]
    end
    out[#out + 1] = redis.call('XADD', mailbox, '*', 'e', f.e or 'message', 'd', f.d or 'null')
    redis.call('XDEL', deadKey, ARGV[i])
  end
end

if #out > 1 and redis.call('HLEN', KEYS[3]) > 0 then
  redis.call('SPUBLISH', KEYS[4], out[2])
end
return out
