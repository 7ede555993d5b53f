local p, app = ARGV[1], ARGV[2]
local key = p .. ':res:' .. app
if redis.call('SET', p .. ':resinit:' .. app, '1', 'NX') then
  for i = 3, #ARGV - 1, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
end
return redis.call('HGETALL', key)
