--[[
  Included (src/queue/scripts.ts) by the scripts that keep or read when a message in flight was
  first written: pop.lua, join.lua, ack.lua, push-ack.lua, expire.lua. Functions only: every key
  is an argument, taken by the caller from its KEYS.

  A first-writes hash maps an event id to '<first write, epoch ms>' after one write, and to
  '<first>:<attempts>' after more (src/queue/receipts.ts reads it too).
]]

-- Redis's own clock, ms, read once per call: pending entries' idle times are measured on it.
local serverNow
local function serverMs()
  if serverNow == nil then
    local t = redis.call('TIME')
    serverNow = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return serverNow
end

-- A first-writes value: '<first write, epoch ms>' after one write, '<first>:<attempts>' after more.
local function parseFirst(value)
  if not value then
    return nil, nil
  end
  local first, attempts = string.match(value, '^(%d+):?(%d*)$')
  return tonumber(first), tonumber(attempts) or 1
end

-- When a message in flight was first written, epoch ms (0 when unknown): kept in the
-- first-writes hash, or, for one written once before receipts were on, its pending entry's
-- idle time (ms) on Redis's clock.
local function firstWrite(firstWrites, id, idle, attempts)
  local first = parseFirst(redis.call('HGET', firstWrites, id))
  if first == nil and attempts <= 1 then
    first = serverMs() - idle
  end
  return first or 0
end
