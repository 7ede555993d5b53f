// Socket.IO clients for the suite (socket.io-client, laravel-echo's socket.io connector) and a
// stand-in for a Laravel app's `/broadcasting/auth`, which laravel-echo-server asks about
// private and presence channels.

import { createServer } from 'node:http';
import Echo from 'laravel-echo';
import { io } from 'socket.io-client';
import { EVENT_TIMEOUT_MS, withTimeout } from './wait.mjs';

export { io };

/**
 * A socket.io-client socket to `broker`'s Socket.IO path, closed when `t` ends. Resolves once
 * connected unless `waitConnected` is false.
 */
export async function sioClient(t, broker, { transports = ['websocket'], auth, waitConnected = true, ...rest } = {}) {
  const socket = io(broker.httpBase, { transports, auth, reconnection: false, forceNew: true, ...rest });
  t.after(() => socket.close());
  if (waitConnected) await connected(socket);
  return socket;
}

/** Resolves once `socket` is connected; rejects with the `connect_error`. */
export function connected(socket, timeoutMs = EVENT_TIMEOUT_MS) {
  if (socket.connected) return Promise.resolve(socket);
  return withTimeout(
    new Promise((res, rej) => {
      socket.once('connect', () => res(socket));
      socket.once('connect_error', rej);
    }),
    timeoutMs,
    'Socket.IO connect',
  );
}

/** Resolves with the `connect_error` of a socket that must be refused. */
export function connectError(socket, timeoutMs = EVENT_TIMEOUT_MS) {
  return withTimeout(
    new Promise((res, rej) => {
      socket.once('connect', () => rej(new Error('connected, but a refusal was expected')));
      socket.once('connect_error', res);
    }),
    timeoutMs,
    'Socket.IO connect_error',
  );
}

/** Resolves with the arguments after the channel of the next `event` on `channel`. */
export function nextOn(socket, event, channel, timeoutMs = EVENT_TIMEOUT_MS) {
  let handler;
  const p = new Promise((res) => {
    handler = (name, ...args) => {
      if (name === channel) res(args.length <= 1 ? args[0] : args);
    };
    socket.on(event, handler);
  });
  return withTimeout(p, timeoutMs, `'${event}' on ${channel}`).finally(() => socket.off(event, handler));
}

/** Subscribes the way laravel-echo-server's clients do and waits for the confirmation. */
export async function subscribe(socket, channel, auth = {}) {
  const confirmed = nextOn(socket, channel.startsWith('presence-') ? 'presence:subscribed' : 'subscription_succeeded', channel);
  socket.emit('subscribe', { channel, auth });
  return confirmed;
}

/**
 * laravel-echo with `broadcaster: 'socket.io'`, given socket.io-client as `client`, closed when
 * `t` ends. `bearer` is sent in `auth.headers` as a Laravel app configures it.
 */
export async function sioEcho(t, broker, { bearer } = {}) {
  // socket.io-client's default transports, as a Laravel app leaves them: long-polling first,
  // then the upgrade to a WebSocket.
  const echo = new Echo({
    broadcaster: 'socket.io',
    client: io,
    host: broker.httpBase,
    reconnection: false,
    forceNew: true,
    auth: bearer ? { headers: { Authorization: `Bearer ${bearer}` } } : {},
  });
  t.after(() => echo.disconnect());
  await connected(echo.connector.socket);
  return echo;
}

/**
 * A stand-in Laravel `/broadcasting/auth`: `Authorization: Bearer <user>` (or the cookie
 * `laravel_session=<user>`) names the user; a user called `mallory` is refused with 403,
 * anyone else is admitted to `private-` channels (`true`) and to `presence-` channels with
 * `{channel_data: {user_id, user_info: {name}}}` as Laravel's Redis broadcaster answers.
 * Every call is kept in `calls`.
 */
export async function startAuthEndpoint() {
  const calls = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const form = Object.fromEntries(new URLSearchParams(body));
      calls.push({ headers: req.headers, form });
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
      const cookie = /laravel_session=([^;]+)/.exec(req.headers.cookie ?? '')?.[1];
      const user = bearer ?? cookie;
      if (!user || user === 'mallory') {
        res.writeHead(403, { 'content-type': 'application/json' }).end('{"message":"This action is unauthorized."}');
        return;
      }
      const answer = form.channel_name.startsWith('presence-')
        ? { channel_data: { user_id: user, user_info: { name: user } } }
        : true;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/broadcasting/auth`,
    calls,
    close: () => new Promise((res) => server.close(res)),
  };
}
