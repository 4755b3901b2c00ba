--[[
  A page's handler failed on these messages (the client library says so): the
  page is alive and had them, so when their ack timeout passes each counts as
  a delivery (pop.lua counts a missed ack when the page reported anything
  after the message was written). A message that always fails thus reaches
  the dead letters after MAX_DELIVERIES, while one that was never handled at
  all (a closed tab, a stream nobody read) does not.

  KEYS[1] mailbox stream
  KEYS[2] when the user last acked or reported anything (epoch ms)

  ARGV[1] consumer group name
  ARGV[2] now, epoch ms
  ARGV[3..] ids

  Output: how many of the ids are in flight
]]
local mailbox, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', mailbox) == 0 then
  return 0
end
local n = 0
for i = 3, #ARGV do
  if #redis.call('XPENDING', mailbox, group, ARGV[i], ARGV[i], 1) == 1 then
    n = n + 1
  end
end
if n > 0 then
  redis.call('SET', KEYS[2], ARGV[2])
end
return n
