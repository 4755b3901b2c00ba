--[[
  Where one message of a user stands, for Web Push to decide whether it is due:
  still in the mailbox (not acked, not dropped), written to a stream or not,
  and whether any node holds an open stream of the user. Read-only: one
  consistent snapshot instead of four round trips.

  KEYS[1] mailbox stream
  KEYS[2] registry of the nodes holding the user's streams (hash: node id -> since)
  KEYS[3] the user's push subscriptions (hash: subscription id -> JSON)

  ARGV[1] consumer group name
  ARGV[2] event id
  ARGV[3] '*' for every subscription of the user, another value for that one subscription, ''
          for none (and no data)

  Output: {state, holders, idleMs, attempts, expiresAt, event, push, data, id1, json1, id2, json2, ...}
    state      0 gone (acked, expired and dropped, dead-lettered or purged); 1 waiting (never
               written, or handed back); 2 in flight (written, not acked)
    holders    nodes holding an open stream of the user
    idleMs     in flight: since it was last written, ms (0 otherwise)
    attempts   in flight: writes so far (0 otherwise)
    expiresAt  the message's expiry, epoch ms (0 = never)
    event      its event name
    push       its push option as stored by enqueue.lua (field p), '' when none
    data       its data (JSON text), '' when ARGV[3] is ''
    id, json   the subscriptions asked for (an id asked for and not stored is left out)
]]
local mailbox, registry, subs = KEYS[1], KEYS[2], KEYS[3]
local group, id, which = ARGV[1], ARGV[2], ARGV[3]

local holders = redis.call('HLEN', registry)
local entry = redis.call('XRANGE', mailbox, id, id)[1]
if entry == nil then
  return {0, holders, 0, 0, 0, '', '', ''}
end
local f = {}
for i = 1, #entry[2], 2 do
  f[entry[2][i]] = entry[2][i + 1]
end

local state, idle, attempts = 1, 0, 0
local pending = redis.call('XPENDING', mailbox, group, id, id, 1)[1]
if pending ~= nil then
  state, idle, attempts = 2, tonumber(pending[3]), tonumber(pending[4])
end

local data = ''
if which ~= '' then
  data = f.d or ''
end
local out = {state, holders, idle, attempts, tonumber(f.x or '0'), f.e or 'message', f.p or '', data}
if which == '*' then
  for _, v in ipairs(redis.call('HGETALL', subs)) do
    out[#out + 1] = v
  end
elseif which ~= '' then
  local json = redis.call('HGET', subs, which)
  if json then
    out[#out + 1] = which
    out[#out + 1] = json
  end
end
return out
