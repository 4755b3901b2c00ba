--[[
  Included (src/queue/scripts.ts) by the scripts that settle messages: ack.lua, push-ack.lua,
  pop.lua, expire.lua, after includes/first-writes.lua. Functions only: every key is an
  argument, taken by the caller from its KEYS (a script's keys share the user's hash tag).

  Receipts and webhook events: src/queue/receipts.ts documents the formats and decodes them.
  Notices: the messages that expired before their first write, which join.lua hands to the
  user's next stream.
]]

-- A receipt spec, '<retention ms> <receipts per user> <webhook event letters or ->'.
local function receiptSpec(text)
  local keep, cap, events = string.match(text or '', '^(%d+) (%d+) (%S+)$')
  keep = tonumber(keep) or 0
  events = events or '-'
  return {keep = keep, cap = tonumber(cap) or 0, events = events, on = keep > 0 or events ~= '-'}
end

-- Calls `cmd key list[i..]` in steps of 500 elements: unpack() has a stack limit.
local function each(cmd, key, list)
  for i = 1, #list, 500 do
    redis.call(cmd, key, unpack(list, i, math.min(i + 499, #list)))
  end
end

-- items: {id, deliveries, attempts, first write (epoch ms, 0 = never written), reason or ''}.
-- Receipt: '<state>:<at - enqueued>:<deliveries>:<attempts>:<first write - enqueued or empty>:<reason>',
-- times in ms from the id's own; the outbox entry carries the same text, '<id>=<receipt>' each.
local function settle(spec, rkeys, state, items, now)
  if #items == 0 then
    return
  end
  local rc, rt, outbox = rkeys[1], rkeys[2], rkeys[3]
  local receipts = {}
  for i, it in ipairs(items) do
    local enqueued = tonumber(string.sub(it[1], 1, string.find(it[1], '-', 1, true) - 1))
    local first = ''
    if it[4] > 0 then
      first = it[4] - enqueued
    end
    receipts[i] = state .. ':' .. (now - enqueued) .. ':' .. it[2] .. ':' .. it[3] .. ':' .. first .. ':' .. it[5]
  end
  if spec.keep > 0 and state ~= 'f' then
    local fields, times = {}, {}
    local stamp = now .. ' '
    for i, it in ipairs(items) do
      fields[#fields + 1] = it[1]
      fields[#fields + 1] = receipts[i]
      times[i] = stamp .. it[1]
    end
    each('HSET', rc, fields)
    each('RPUSH', rt, times)
    -- Bounded by age (at most 100 a call) and by count, oldest first. The list is in write order,
    -- which is time order but for clock skew between nodes: the status read checks the age too.
    local drop = 0
    local head = redis.call('LINDEX', rt, 0)
    if head and tonumber(string.match(head, '^(%d+)')) <= now - spec.keep then
      for _, e in ipairs(redis.call('LRANGE', rt, 0, 99)) do
        if tonumber(string.match(e, '^(%d+)')) > now - spec.keep then
          break
        end
        drop = drop + 1
      end
    end
    drop = math.max(drop, redis.call('LLEN', rt) - spec.cap)
    if drop > 0 then
      local gone = {}
      for _, e in ipairs(redis.call('LRANGE', rt, 0, drop - 1)) do
        gone[#gone + 1] = string.match(e, ' (%S+)$')
      end
      redis.call('LTRIM', rt, drop, -1)
      each('HDEL', rc, gone)
    end
    redis.call('PEXPIRE', rc, spec.keep)
    redis.call('PEXPIRE', rt, spec.keep)
  end
  if string.find(spec.events, state, 1, true) then
    -- One entry per call and state; a node moves it into a webhook job (src/queue/webhook-outbox.ts).
    local m = {}
    for i, it in ipairs(items) do
      m[i] = it[1] .. '=' .. receipts[i]
    end
    redis.call('XADD', outbox, 'MAXLEN', '~', 10000, '*', 't', state, 'n', #items, 'm', table.concat(m, ' '))
    redis.call('PEXPIRE', outbox, 86400000)
  end
end

-- Notes the messages that expired before their first write (ids oldest first) for the user's
-- next stream: the list keeps the newest 100, newest first; the count goes on (a week each).
local function noteMissed(missedIds, missedCount, ids)
  if #ids == 0 then
    return
  end
  each('LPUSH', missedIds, ids)
  redis.call('LTRIM', missedIds, 0, 99)
  redis.call('INCRBY', missedCount, #ids)
  redis.call('PEXPIRE', missedIds, 604800000)
  redis.call('PEXPIRE', missedCount, 604800000)
end
