local p, node, app, user = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local events, quiet = ARGV[6], ARGV[9] == '1'
local index = p .. ':n:' .. node
local field = 'u\n' .. app .. '\n' .. user
local counts = p .. ':u:' .. app
if ARGV[5] == '1' then
  if redis.call('HSETNX', index, field, ARGV[8]) == 1 then
    if redis.call('HINCRBY', counts, user, 1) == 1 and not quiet then
      redis.call('PUBLISH', events, ARGV[7])
    end
  end
elseif redis.call('HDEL', index, field) == 1 then
  if redis.call('HINCRBY', counts, user, -1) <= 0 then
    redis.call('HDEL', counts, user)
    if not quiet then redis.call('PUBLISH', events, ARGV[8]) end
  end
end
return 1
