local p, node, app, ch = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local count = tonumber(ARGV[5])
local op, user = ARGV[6], ARGV[7]
local events, quiet = ARGV[12], ARGV[13] == '1'
local index = p .. ':n:' .. node
local roster_key = p .. ':m:' .. app .. ':' .. ch
local refs_key = p .. ':mr:' .. app .. ':' .. ch
local refused, member, occupied = 0, 0, 0
if op == 'join' then
  local field = 'm\n' .. app .. '\n' .. ch .. '\n' .. user
  if redis.call('HEXISTS', index, field) == 0 then
    local refs = tonumber(redis.call('HGET', refs_key, user) or '0')
    local max = tonumber(ARGV[11])
    if refs == 0 and max > 0 and redis.call('HLEN', roster_key) >= max then
      refused = 1
    else
      redis.call('HSET', index, field, ARGV[10])
      redis.call('HINCRBY', refs_key, user, 1)
      if refs == 0 then
        redis.call('HSET', roster_key, user, ARGV[8])
        member = 1
        if not quiet then redis.call('PUBLISH', events, ARGV[9]) end
      end
    end
  end
elseif op == 'leave' then
  local field = 'm\n' .. app .. '\n' .. ch .. '\n' .. user
  local removed = redis.call('HGET', index, field)
  if removed then
    redis.call('HDEL', index, field)
    local refs = redis.call('HINCRBY', refs_key, user, -1)
    if refs <= 0 then
      redis.call('HDEL', refs_key, user)
      redis.call('HDEL', roster_key, user)
      member = -1
      if not quiet then redis.call('PUBLISH', events, removed) end
    end
  end
end
local per_node = p .. ':cn:' .. app .. ':' .. ch
local totals = p .. ':c:' .. app
local old = tonumber(redis.call('HGET', per_node, node) or '0')
local total = tonumber(redis.call('HGET', totals, ch) or '0')
if count ~= old then
  local cfield = 'c\n' .. app .. '\n' .. ch
  if count > 0 then
    redis.call('HSET', per_node, node, count)
    redis.call('HSET', index, cfield, count)
  else
    redis.call('HDEL', per_node, node)
    redis.call('HDEL', index, cfield)
  end
  local new_total = total + count - old
  if new_total > 0 then
    redis.call('HSET', totals, ch, new_total)
  else
    redis.call('HDEL', totals, ch)
    new_total = 0
  end
  if total == 0 and new_total > 0 then occupied = 1 end
  if total > 0 and new_total == 0 then occupied = -1 end
  total = new_total
end
if not quiet then
  -- A channel or user back within the leave delay was never gone: its vacated or removed
  -- event is cancelled, and there is nothing to announce.
  if occupied == 1 and not unhook(p, 'v', app, ch, '') then hook(p, 'o', app, ch, '', 0) end
  if member == 1 and not unhook(p, 'r', app, ch, user) then hook(p, 'a', app, ch, user, 0) end
  if member == -1 then hook(p, 'r', app, ch, user, LEAVE_DELAY_MS) end
  if occupied == -1 then hook(p, 'v', app, ch, '', LEAVE_DELAY_MS) end
end
local roster = {}
if ARGV[14] == '1' then roster = redis.call('HGETALL', roster_key) end
local cached = {}
if ARGV[15] == '1' then
  local key = p .. ':cache:' .. app .. ':' .. ch
  local last = redis.call('GET', key)
  if last then cached = {last, redis.call('PTTL', key)} end
end
return {refused, member, occupied, total, roster, cached}
