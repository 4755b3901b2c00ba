--[[
  Counts of one user's queue for the admin. Read-only. Messages past their TTL
  that housekeeping has not swept yet are counted apart: they will never be
  delivered (pop.lua drops them), so they are neither waiting nor in flight.

  KEYS[1] mailbox stream
  KEYS[2] dead-letter stream
  KEYS[3] expiries: sorted set, score = expiry epoch ms, member = event id (enqueue.lua);
          it also holds ids already acked or dropped, until housekeeping removes them

  ARGV[1] consumer group name
  ARGV[2] now, epoch ms
  ARGV[3] most expired ids examined, and most entries walked to find the oldest one alive:
          bounds the work of one call (beyond it, the rest count as alive)

  Output: {length, inflight, dead, oldest, expiredWaiting, expiredInflight}
    length           entries in the mailbox (waiting plus in flight, expired ones included)
    inflight         entries delivered and not acked (the group's pending list)
    dead             dead letters
    oldest           id of the oldest entry not expired, '' when there is none
    expiredWaiting   entries past their TTL never delivered
    expiredInflight  entries past their TTL delivered and not acked
]]
--- @include "includes/expired-counts.lua"

local mailbox, deadKey, expiries = KEYS[1], KEYS[2], KEYS[3]
local group = ARGV[1]
local now = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
local length, inflight, oldest = 0, 0, ''
local expiredWaiting, expiredInflight = 0, 0

if redis.call('EXISTS', mailbox) == 1 then
  length = redis.call('XLEN', mailbox)
  -- pcall: a mailbox created outside postbox may lack the group; it then has nothing in flight.
  local summary = redis.pcall('XPENDING', mailbox, group)
  local hasGroup = type(summary) == 'table' and summary[1] ~= nil
  if hasGroup then
    inflight = tonumber(summary[1]) or 0
  end

  expiredWaiting, expiredInflight = expiredCounts(mailbox, expiries, group, hasGroup, now, budget)

  -- The oldest entry alive: the first one without an expiry (`x`) at or before now.
  local cursor, walked = '-', 0
  while oldest == '' and walked < budget do
    local page = redis.call('XRANGE', mailbox, cursor, '+', 'COUNT', 50)
    if #page == 0 then
      break
    end
    for _, entry in ipairs(page) do
      local fields, expiry = entry[2], nil
      for i = 1, #fields, 2 do
        if fields[i] == 'x' then
          expiry = tonumber(fields[i + 1])
        end
      end
      if expiry == nil or expiry > now then
        oldest = entry[1]
        break
      end
    end
    walked = walked + #page
    cursor = '(' .. page[#page][1]
  end
  if oldest == '' and walked >= budget then
    -- Budget spent on expired entries: the next entry stands in (its age bounds the true one).
    local next = redis.call('XRANGE', mailbox, cursor, '+', 'COUNT', 1)[1]
    if next then
      oldest = next[1]
    end
  end
end

return {length, inflight, redis.call('XLEN', deadKey), oldest, expiredWaiting, expiredInflight}
