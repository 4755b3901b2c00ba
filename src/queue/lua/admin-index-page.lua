--[[
  One page of the users index in (score, member) order, starting strictly
  after a cursor. Keyset paging: users added or pruned between pages never
  make a page repeat or skip a user that stayed in the index. Touches the
  index key only, so it is legal in a Redis Cluster.

  KEYS[1] users index (sorted set)

  ARGV[1] cursor score ('' = from the start)
  ARGV[2] cursor member
  ARGV[3] page size

  Output: {member1, score1, member2, score2, ...}
]]
local index = KEYS[1]
local count = tonumber(ARGV[3])
local start = 0

-- Byte-wise a < b, as Redis orders equal-score members. Not Lua's `<`: that
-- uses strcoll, and redis-server sets LC_COLLATE from its environment.
local function before(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end

if ARGV[1] ~= '' then
  local score, member = ARGV[1], ARGV[2]
  -- Members with the cursor's score sit at ranks [low, high), ordered by member:
  -- find the first one after the cursor's member by bisection, one probe a step.
  local low = redis.call('ZCOUNT', index, '-inf', '(' .. score)
  local high = low + redis.call('ZCOUNT', index, score, score)
  while low < high do
    local mid = math.floor((low + high) / 2)
    local probe = redis.call('ZRANGE', index, mid, mid)[1]
    if not before(member, probe) then
      low = mid + 1
    else
      high = mid
    end
  end
  start = low
end

return redis.call('ZRANGE', index, start, start + count - 1, 'WITHSCORES')
