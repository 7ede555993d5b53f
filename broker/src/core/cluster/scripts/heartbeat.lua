local p, node, timeout, events = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
local now = clock_ms()
local nodes = p .. ':nodes'
local new = redis.call('ZADD', nodes, now, node)
local out = {}
local removed_nodes = 0
for _, dead in ipairs(redis.call('ZRANGEBYSCORE', nodes, '-inf', now - timeout)) do
  if dead ~= node then
    removed_nodes = removed_nodes + 1
    local entries = redis.call('HGETALL', p .. ':n:' .. dead)
    for i = 1, #entries, 2 do
      drop_entry(p, dead, entries[i], entries[i + 1], events, false, out)
    end
    redis.call('DEL', p .. ':n:' .. dead)
    redis.call('ZREM', nodes, dead)
  end
end
local elsewhere = {}
for i = 5, #ARGV - 1, 2 do
  local app, mine = ARGV[i], tonumber(ARGV[i + 1])
  local counts = p .. ':k:' .. app
  if mine > 0 then
    redis.call('HSET', counts, node, mine)
    redis.call('HSET', p .. ':n:' .. node, 'k\n' .. app, mine)
  else
    redis.call('HDEL', counts, node)
    redis.call('HDEL', p .. ':n:' .. node, 'k\n' .. app)
  end
  local others = 0
  local all = redis.call('HGETALL', counts)
  for j = 1, #all, 2 do
    if all[j] ~= node then others = others + tonumber(all[j + 1]) end
  end
  table.insert(elsewhere, others)
end
return {new, redis.call('ZCARD', nodes), removed_nodes, out, elsewhere}
