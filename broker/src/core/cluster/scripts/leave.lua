local p, node, events = ARGV[1], ARGV[2], ARGV[3]
local out = {}
local entries = redis.call('HGETALL', p .. ':n:' .. node)
for i = 1, #entries, 2 do
  drop_entry(p, node, entries[i], entries[i + 1], events, false, out)
end
redis.call('DEL', p .. ':n:' .. node)
redis.call('ZREM', p .. ':nodes', node)
return out
