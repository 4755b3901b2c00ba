--[[
  The page did not handle these messages (the client library says so), and
  it is alive: it had them.
  - 'failed': its handler threw. When their ack timeout passes each counts as
    a delivery (pop.lua counts a missed ack when the page reported anything
    after the message was written), so a message that always fails reaches
    the dead letters after MAX_DELIVERIES.
  - 'unhandled': the page has no handler for their event. Until it is written
    again it does not count (another tab may have a handler); after
    MAX_ATTEMPTS writes it is a dead letter with the reason 'unhandled'.
  A message never handled at all (a closed tab, a stream nobody read) does
  not count either.

  KEYS[1] mailbox stream
  KEYS[2] when the user last acked or reported anything (epoch ms)
  KEYS[3] counted deliveries (hash: event id -> deliveries; 'u:' .. id -> 1 while unhandled)

  ARGV[1] consumer group name
  ARGV[2] now, epoch ms
  ARGV[3] 'failed' or 'unhandled'
  ARGV[4..] ids

  Output: how many of the ids are in flight
]]
local mailbox, group = KEYS[1], ARGV[1]
if redis.call('EXISTS', mailbox) == 0 then
  return 0
end
local n = 0
for i = 4, #ARGV do
  if #redis.call('XPENDING', mailbox, group, ARGV[i], ARGV[i], 1) == 1 then
    n = n + 1
    if ARGV[3] == 'unhandled' then
      redis.call('HSET', KEYS[3], 'u:' .. ARGV[i], 1)
    end
  end
end
if n > 0 then
  redis.call('SET', KEYS[2], ARGV[2])
end
return n
