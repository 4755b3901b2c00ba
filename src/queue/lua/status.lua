--[[
  What became of some messages of one user, for the status API
  (src/queue/receipts.ts decodes it). Read-only: a receipt for messages that
  are done (acked, expired, dead), else the mailbox and its pending list.

  KEYS[1] mailbox stream
  KEYS[2] receipts (hash: event id -> receipt)
  KEYS[3] counted deliveries (hash: event id -> deliveries that counted)
  KEYS[4] first writes of messages in flight (hash: event id -> '<epoch ms>[:<attempts>]')

  ARGV[1] consumer group name
  ARGV[2..] event ids

  Output: one entry per id, in order:
    {'r', receipt}                                   done: the receipt as ack.lua, pop.lua or expire.lua wrote it
    {'i', attempts, firstWriteMs, deliveries, expiresAt}  in flight (expiresAt '' without a TTL)
    {'w', expiresAt}                                 waiting
    {'u'}                                            unknown (never, purged, or its receipt is gone)
]]
local mailbox, receipts, counted, firstWrites = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local group = ARGV[1]
local hasMailbox = redis.call('EXISTS', mailbox) == 1
-- Redis's clock, on which idle times are measured, so (this - idle) is the first write's time.
local t = redis.call('TIME')
local serverNow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}

for i = 2, #ARGV do
  local id = ARGV[i]
  local receipt = redis.call('HGET', receipts, id)
  local entry = nil
  if not receipt and hasMailbox then
    entry = redis.call('XRANGE', mailbox, id, id)[1]
  end
  if receipt then
    out[#out + 1] = {'r', receipt}
  elseif entry then
    local expiresAt = ''
    for j = 1, #entry[2], 2 do
      if entry[2][j] == 'x' then
        expiresAt = entry[2][j + 1]
      end
    end
    local p = redis.call('XPENDING', mailbox, group, id, id, 1)[1]
    if p then
      local attempts = tonumber(p[4])
      local first = tonumber(string.match(redis.call('HGET', firstWrites, id) or '', '^(%d+)'))
      if first == nil and attempts == 1 then
        first = serverNow - tonumber(p[3])
      end
      first = first or 0
      out[#out + 1] = {'i', attempts, first, tonumber(redis.call('HGET', counted, id) or '0') or 0, expiresAt}
    else
      out[#out + 1] = {'w', expiresAt}
    end
  else
    out[#out + 1] = {'u'}
  end
end
return out
