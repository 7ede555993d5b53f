local key = ARGV[1] .. ':epoch'
redis.call('SET', key, ARGV[2], 'NX')
return redis.call('GET', key)
