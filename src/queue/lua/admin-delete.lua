--[[
  Removes one waiting or in-flight message from a user's mailbox: acked out of
  the pending list and deleted in one step, so the drain can neither deliver
  nor redeliver it afterwards.

  KEYS[1] mailbox stream
  KEYS[2] counted deliveries (hash: event id -> deliveries)

  ARGV[1] consumer group name
  ARGV[2] event id

  Output: 1 removed; 0 no such message in this mailbox
]]
local mailbox, group, id = KEYS[1], ARGV[1], ARGV[2]
if redis.call('EXISTS', mailbox) == 0 then
  return 0
end
if redis.call('XRANGE', mailbox, id, id)[1] == nil then
  return 0
end
redis.pcall('XACK', mailbox, group, id)
redis.call('XDEL', mailbox, id)
redis.call('HDEL', KEYS[2], id, 'u:' .. id)
return 1
