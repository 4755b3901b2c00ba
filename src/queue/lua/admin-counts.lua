--[[
  Counts of one user's queue for the admin listing. Read-only.

  KEYS[1] mailbox stream
  KEYS[2] dead-letter stream

  ARGV[1] consumer group name

  Output: {length, inflight, dead, oldest}
    length    entries in the mailbox (waiting plus in flight)
    inflight  entries delivered and not acked (the group's pending list)
    dead      dead letters
    oldest    id of the oldest entry in the mailbox, '' when it is empty
]]
local mailbox, deadKey = KEYS[1], KEYS[2]
local length, inflight, oldest = 0, 0, ''

if redis.call('EXISTS', mailbox) == 1 then
  length = redis.call('XLEN', mailbox)
  -- pcall: a mailbox created outside postbox may lack the group; it then has nothing in flight.
  local summary = redis.pcall('XPENDING', mailbox, ARGV[1])
  if type(summary) == 'table' and summary[1] ~= nil then
    inflight = tonumber(summary[1]) or 0
  end
  local first = redis.call('XRANGE', mailbox, '-', '+', 'COUNT', 1)[1]
  if first then
    oldest = first[1]
  end
end

return {length, inflight, redis.call('XLEN', deadKey), oldest}
