--[[
  Stores one Web Push subscription of a user, or refreshes it (same endpoint,
  same id), and keeps at most PUSH_MAX_SUBSCRIPTIONS_PER_USER: beyond it the
  subscriptions stored longest ago are removed. A browser that is reinstalled
  or clears its data subscribes anew and never unsubscribes the old endpoint,
  which only a push answered 404/410 would reveal; replacing the oldest keeps
  a user's newest devices reachable.

  KEYS[1] the user's push subscriptions (hash: subscription id -> JSON with `at`)

  ARGV[1] subscription id
  ARGV[2] subscription JSON (with `at`, epoch ms)
  ARGV[3] PUSH_MAX_SUBSCRIPTIONS_PER_USER

  Output: {created, replaced, count}
    created   1 for a new endpoint, 0 when it was stored already (refreshed)
    replaced  subscriptions removed to make room
    count     subscriptions the user has now
]]
local subs = KEYS[1]
local created = redis.call('HSET', subs, ARGV[1], ARGV[2])
local max = tonumber(ARGV[3])
local replaced = 0
local count = redis.call('HLEN', subs)
if count > max then
  local all = redis.call('HGETALL', subs)
  local entries = {}
  for i = 1, #all, 2 do
    if all[i] ~= ARGV[1] then
      local ok, decoded = pcall(cjson.decode, all[i + 1])
      local at = 0
      if ok and type(decoded) == 'table' and tonumber(decoded.at) then
        at = tonumber(decoded.at)
      end
      entries[#entries + 1] = {all[i], at}
    end
  end
  table.sort(entries, function(a, b) return a[2] < b[2] end)
  for i = 1, count - max do
    redis.call('HDEL', subs, entries[i][1])
    replaced = replaced + 1
  end
  count = count - replaced
end
return {created, replaced, count}
