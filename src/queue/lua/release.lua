--[[
  The last stream of a user on one node closed: the node leaves the user's
  registry and gives up the drain lease if it held it, so another node
  holding the user takes over at once instead of when the lease runs out.

  KEYS[1] registry of the nodes holding the user's streams
  KEYS[2] drain lease of the user

  ARGV[1] node id

  Output: how many other nodes still hold the user
]]
redis.call('HDEL', KEYS[1], ARGV[1])
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return redis.call('HLEN', KEYS[1])
