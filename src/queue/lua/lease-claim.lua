--[[
  Takes or renews the lease to drain a user whose streams are on several nodes.

  KEYS[1] drainer lease of one user

  ARGV[1] node id
  ARGV[2] lease, ms

  Output: 1 when this node holds the lease now (taken, or renewed because it already held it), else 0
]]
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
