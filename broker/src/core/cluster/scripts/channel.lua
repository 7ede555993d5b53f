local p, app, ch = ARGV[1], ARGV[2], ARGV[3]
return {tonumber(redis.call('HGET', p .. ':c:' .. app, ch) or '0'),
        redis.call('HLEN', p .. ':m:' .. app .. ':' .. ch)}
