--[[
  Reads webhook events from one user's outbox for this node to put into
  webhook jobs (src/queue/webhook-outbox.ts). A short lock keeps two nodes
  from taking the same entries at once; the entries stay until the node has
  stored its jobs and deletes them (outbox-done.lua). A node that stops
  meanwhile leaves them in place: once the lock runs out, whichever node
  looks next (the housekeeping sweep finds them) takes them again.

  KEYS[1] outbox stream (entries: t = state letter, n = events, m = '<id>=<receipt>' items, space-separated)
  KEYS[2] lock (string: node id, with an expiry)

  ARGV[1] node id
  ARGV[2] lock, ms
  ARGV[3] most entries to read
  ARGV[4] most events to read (the first entry is read whatever its size)

  Output: {status, {entryId, state, items}, ...}
    status  0 the outbox is empty; 1 entries follow; 2 another node holds the lock
]]
local outbox, lock, node = KEYS[1], KEYS[2], ARGV[1]
if redis.call('EXISTS', outbox) == 0 then
  return {0}
end
local holder = redis.call('GET', lock)
if holder and holder ~= node then
  return {2}
end
redis.call('SET', lock, node, 'PX', ARGV[2])

local out = {1}
local events, budget = 0, tonumber(ARGV[4])
for _, entry in ipairs(redis.call('XRANGE', outbox, '-', '+', 'COUNT', tonumber(ARGV[3]))) do
  local f = {}
  for i = 1, #entry[2], 2 do
    f[entry[2][i]] = entry[2][i + 1]
  end
  local n = tonumber(f.n) or 1
  if #out > 1 and events + n > budget then
    break
  end
  events = events + n
  out[#out + 1] = {entry[1], f.t or '', f.m or ''}
end
return out
