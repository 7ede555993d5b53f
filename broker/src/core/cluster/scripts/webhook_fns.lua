-- The Redis clock, and the queue of webhook events. scripts.rs writes
-- `local LEAVE_DELAY_MS = ...` (core::webhook::LEAVE_DELAY) before this text.
local function clock_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function hook(p, kind, app, ch, user, delay)
  local key = kind .. '\n' .. app .. '\n' .. ch .. '\n' .. user
  local old = redis.call('HGET', p .. ':whk', key)
  if old then redis.call('ZREM', p .. ':wh', old) end
  local member = string.format('%015d', redis.call('INCR', p .. ':whseq')) .. '\n' .. key
  redis.call('ZADD', p .. ':wh', clock_ms() + delay, member)
  redis.call('HSET', p .. ':whk', key, member)
end
local function unhook(p, kind, app, ch, user)
  local key = kind .. '\n' .. app .. '\n' .. ch .. '\n' .. user
  local member = redis.call('HGET', p .. ':whk', key)
  if not member then return false end
  redis.call('ZREM', p .. ':wh', member)
  redis.call('HDEL', p .. ':whk', key)
  return true
end
