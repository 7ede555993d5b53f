-- (needs webhook_fns.lua)
local function drop_entry(p, node, field, value, events, quiet, out)
  local kind = string.sub(field, 1, 1)
  local rest = string.sub(field, 3)
  if kind == 'k' then
    redis.call('HDEL', p .. ':k:' .. rest, node)
    redis.call('HDEL', p .. ':n:' .. node, field)
    return
  end
  local i = string.find(rest, '\n', 1, true)
  if not i then return end
  local app = string.sub(rest, 1, i - 1)
  rest = string.sub(rest, i + 1)
  if kind == 'c' then
    local ch = rest
    local cn = p .. ':cn:' .. app .. ':' .. ch
    local n = tonumber(redis.call('HGET', cn, node) or '0')
    redis.call('HDEL', cn, node)
    local totals = p .. ':c:' .. app
    local total = tonumber(redis.call('HGET', totals, ch) or '0') - n
    if total > 0 then
      redis.call('HSET', totals, ch, total)
    else
      if redis.call('HDEL', totals, ch) == 1 then
        if not quiet then hook(p, 'v', app, ch, '', LEAVE_DELAY_MS) end
        table.insert(out, {'v', app, ch, ''})
      end
    end
  elseif kind == 'm' then
    local j = string.find(rest, '\n', 1, true)
    if not j then return end
    local ch = string.sub(rest, 1, j - 1)
    local user = string.sub(rest, j + 1)
    local refs_key = p .. ':mr:' .. app .. ':' .. ch
    local refs = redis.call('HINCRBY', refs_key, user, -1)
    if refs <= 0 then
      redis.call('HDEL', refs_key, user)
      redis.call('HDEL', p .. ':m:' .. app .. ':' .. ch, user)
      if not quiet then
        redis.call('PUBLISH', events, value)
        hook(p, 'r', app, ch, user, LEAVE_DELAY_MS)
      end
      table.insert(out, {'r', app, ch, user})
    end
  elseif kind == 'u' then
    local counts = p .. ':u:' .. app
    if redis.call('HINCRBY', counts, rest, -1) <= 0 then
      redis.call('HDEL', counts, rest)
      if not quiet then redis.call('PUBLISH', events, value) end
    end
  end
  redis.call('HDEL', p .. ':n:' .. node, field)
end
