--[[
  Gives up the lease to drain a user, if this node holds it.

  KEYS[1] drainer lease of one user

  ARGV[1] node id

  Output: 1 when the lease was this node's and is now free, else 0
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
