local p, app, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local key = p .. ':rev:' .. app
for i = 4, #ARGV - 1, 2 do
  if tonumber(ARGV[i + 1]) > tonumber(redis.call('HGET', key, ARGV[i]) or '0') then
    redis.call('HSET', key, ARGV[i], ARGV[i + 1])
  end
end
local all = redis.call('HGETALL', key)
local out = {}
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) < now then
    redis.call('HDEL', key, all[i])
  else
    table.insert(out, all[i])
    table.insert(out, all[i + 1])
  end
end
return out
