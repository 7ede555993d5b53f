local p, app, ch = ARGV[1], ARGV[2], ARGV[3]
redis.call('SET', p .. ':cache:' .. app .. ':' .. ch, ARGV[6], 'PX', ARGV[4])
return redis.call('PUBLISH', ARGV[5], ARGV[6])
