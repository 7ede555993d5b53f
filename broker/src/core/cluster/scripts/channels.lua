local p, app, prefix = ARGV[1], ARGV[2], ARGV[3]
local all = redis.call('HGETALL', p .. ':c:' .. app)
local out = {}
for i = 1, #all, 2 do
  local name = all[i]
  if string.sub(name, 1, #prefix) == prefix then
    table.insert(out, name)
    table.insert(out, tonumber(all[i + 1]))
    table.insert(out, redis.call('HLEN', p .. ':m:' .. app .. ':' .. name))
  end
end
return out
