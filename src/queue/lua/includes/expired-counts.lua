--[[
  Included (src/queue/scripts.ts) by the scripts that count a user's queue: admin-counts.lua,
  join.lua (its postbox.counts), so a badge and the admin agree. Functions only: every key is an
  argument, taken by the caller from its KEYS.
]]

-- Messages past their TTL still in the mailbox, {waiting, in flight}: they will never be
-- written (pop.lua drops them), so they are neither waiting nor in flight. The expiries set
-- (score = expiry epoch ms, member = event id, enqueue.lua) also holds ids already acked or
-- dropped, until housekeeping removes them: those are skipped. At most `budget` due ids are
-- examined; beyond them, the rest count as alive. `hasGroup` false: nothing is in flight.
local function expiredCounts(mailbox, expiries, group, hasGroup, now, budget)
  local waiting, inflight = 0, 0
  for _, id in ipairs(redis.call('ZRANGE', expiries, '-inf', now, 'BYSCORE', 'LIMIT', 0, budget)) do
    if #redis.call('XRANGE', mailbox, id, id) > 0 then
      if hasGroup and #redis.call('XPENDING', mailbox, group, id, id, 1) > 0 then
        inflight = inflight + 1
      else
        waiting = waiting + 1
      end
    end
  end
  return waiting, inflight
end
