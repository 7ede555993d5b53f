local p, limit = ARGV[1], tonumber(ARGV[2])
local due = redis.call('ZRANGEBYSCORE', p .. ':wh', '-inf', clock_ms(), 'LIMIT', 0, limit)
local out = {}
for _, member in ipairs(due) do
  redis.call('ZREM', p .. ':wh', member)
  local key = string.sub(member, 17)
  if redis.call('HGET', p .. ':whk', key) == member then
    redis.call('HDEL', p .. ':whk', key)
  end
  table.insert(out, key)
end
return out
