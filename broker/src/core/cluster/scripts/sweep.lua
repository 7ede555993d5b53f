local p, node, events, quiet = ARGV[1], ARGV[2], ARGV[3], ARGV[4] == '1'
local keep = {}
for i = 5, #ARGV do keep[ARGV[i]] = true end
local out = {}
local entries = redis.call('HGETALL', p .. ':n:' .. node)
for i = 1, #entries, 2 do
  -- Connection counts ('k') are refreshed by heartbeats, not reports.
  if not keep[entries[i]] and string.sub(entries[i], 1, 1) ~= 'k' then
    drop_entry(p, node, entries[i], entries[i + 1], events, quiet, out)
  end
end
return out
