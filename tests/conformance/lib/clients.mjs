// Real client libraries pointed at a test broker: pusher-js, the pusher server SDK, raw ws.
import PusherClient from 'pusher-js';
import PusherServer from 'pusher';
import WebSocket from 'ws';
import { APP } from './broker.mjs';

/** The official server SDK for the broker's app (triggers, queries, signatures). */
export function serverSdk(broker, app = APP, { masterKey } = {}) {
  return new PusherServer({
    encryptionMasterKeyBase64: masterKey,
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: broker.host,
    port: String(broker.port),
    useTLS: false,
  });
}

/**
 * A pusher-js client whose channel authorization is signed by the server SDK, as a Laravel
 * backend would. `presence(channel)` supplies presence data, `user` the sign-in user data;
 * `secret` lets a test sign wrongly; `masterKey` (base64) enables encrypted channels.
 */
export function pusherClient(broker, { app = APP, presence = () => ({ user_id: 'anonymous' }), secret, user, masterKey } = {}) {
  const signer = serverSdk(broker, secret ? { ...app, secret } : app, { masterKey });
  const client = new PusherClient(app.key, {
    wsHost: broker.host,
    wsPort: broker.port,
    forceTLS: false,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        const data = channelName.startsWith('presence-') ? presence(channelName) : undefined;
        callback(null, signer.authorizeChannel(socketId, channelName, data));
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        callback(null, signer.authenticateUser(socketId, user ?? { id: 'anonymous' }));
      },
    },
  });
  return client;
}

/** Resolves once the client is connected. */
export function connected(client) {
  return waitFor((resolve) => {
    if (client.connection.state === 'connected') return resolve(client.connection.socket_id);
    client.connection.bind('connected', () => resolve(client.connection.socket_id));
  }, 'connected');
}

/** Subscribes and resolves with the subscription_succeeded data. */
export function subscribed(client, name) {
  const channel = client.subscribe(name);
  return waitFor((resolve, reject) => {
    channel.bind('pusher:subscription_succeeded', (data) => resolve({ channel, data }));
    channel.bind('pusher:subscription_error', (error) => reject(new Error(`subscription_error: ${JSON.stringify(error)}`)));
  }, `subscribed to ${name}`);
}

/** Resolves with `(data, metadata)` of the next `event` on `channel`. */
export function nextEvent(channel, event, ms = 5000) {
  return waitFor((resolve) => {
    const handler = (data, metadata) => {
      channel.unbind(event, handler);
      resolve({ data, metadata });
    };
    channel.bind(event, handler);
  }, `event ${event}`, ms);
}

/** Wraps a callback-style wait in a promise with a timeout, so no test can hang. */
export function waitFor(body, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    body(
      (value) => { clearTimeout(timer); resolve(value); },
      (error) => { clearTimeout(timer); reject(error); },
    );
  });
}

/** Resolves if nothing arrives for `ms` (used to prove something was NOT delivered). */
export function nothingWithin(channel, event, ms = 500) {
  return new Promise((resolve, reject) => {
    const handler = (data) => reject(new Error(`unexpected ${event}: ${JSON.stringify(data)}`));
    channel.bind(event, handler);
    setTimeout(() => { channel.unbind(event, handler); resolve(); }, ms);
  });
}

/** A raw WebSocket that collects parsed messages and the close code. */
export async function rawSocket(broker, path) {
  const ws = new WebSocket(`ws://${broker.host}:${broker.port}${path}`);
  const messages = [];
  const waiters = [];
  let closeCode = null;
  ws.on('message', (text) => {
    const message = JSON.parse(text.toString());
    messages.push(message);
    waiters.splice(0).forEach((w) => w());
  });
  const closed = new Promise((resolve) => ws.on('close', (code) => { closeCode = code; waiters.splice(0).forEach((w) => w()); resolve(code); }));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  return {
    ws,
    closed,
    send: (message) => ws.send(typeof message === 'string' ? message : JSON.stringify(message)),
    /** The next message matching `pred` (already received ones included). */
    next(pred = () => true, ms = 5000) {
      return waitFor((resolve, reject) => {
        const check = () => {
          const index = messages.findIndex(pred);
          if (index >= 0) return resolve(messages.splice(index, 1)[0]);
          if (closeCode !== null) return reject(new Error(`closed (${closeCode}) before a matching message`));
          waiters.push(check);
        };
        check();
      }, 'a raw message', ms);
    },
    close: () => ws.close(),
  };
}

/** Disconnects every client given, ignoring ones already gone. */
export function disconnectAll(...clients) {
  for (const client of clients) {
    try { client.disconnect(); } catch { /* already closed */ }
  }
}
