--[[
  Acknowledges messages of one user: each id in flight is removed from the
  in-flight list and deleted. Ids that are not in flight in this mailbox
  (already acked, never delivered, someone else's) are ignored.

  KEYS[1] mailbox stream

  ARGV[1] consumer group name
  ARGV[2] '' to ack the ids ARGV[3..]; otherwise an id: ack everything in flight up to and including it
  ARGV[3..] ids

  Output: number of messages acknowledged
]]
local mailbox, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', mailbox) == 0 then
  return 0
end

local ids = {}
if ARGV[2] ~= '' then
  for _, p in ipairs(redis.call('XPENDING', mailbox, group, '-', ARGV[2], 100000)) do
    ids[#ids + 1] = p[1]
  end
else
  for i = 3, #ARGV do
    ids[#ids + 1] = ARGV[i]
  end
end

local acked = 0
for _, id in ipairs(ids) do
  if redis.call('XACK', mailbox, group, id) == 1 then
    redis.call('XDEL', mailbox, id)
    acked = acked + 1
  end
end
return acked
