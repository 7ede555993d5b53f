local p, kind, app, field, value = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local key = p .. ':' .. kind .. ':' .. app
if kind == 'res' then
  if value == '' then redis.call('HDEL', key, field) else redis.call('HSET', key, field, value) end
  redis.call('SET', p .. ':resinit:' .. app, '1')
else
  local old = tonumber(redis.call('HGET', key, field) or '0')
  if tonumber(value) > old then redis.call('HSET', key, field, value) end
end
return redis.call('PUBLISH', ARGV[6], ARGV[7])
