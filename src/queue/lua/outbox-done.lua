--[[
  The entries outbox-take.lua returned are in webhook jobs now (or were
  dropped and counted): deletes them, deletes the outbox once empty, and
  releases the lock if this node holds it.

  KEYS[1] outbox stream
  KEYS[2] lock

  ARGV[1] node id
  ARGV[2..] outbox entry ids

  Output: entries left in the outbox (written meanwhile): the node takes them next
]]
local outbox, lock = KEYS[1], KEYS[2]
if #ARGV > 1 then
  redis.call('XDEL', outbox, unpack(ARGV, 2))
end
local left = redis.call('XLEN', outbox)
if left == 0 then
  redis.call('DEL', outbox)
end
if redis.call('GET', lock) == ARGV[1] then
  redis.call('DEL', lock)
end
return left
