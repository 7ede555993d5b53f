// Client factories: pusher-js (the real browser/Node client), the official `pusher` server SDK and
// laravel-echo. Channel and user signatures are produced only by the server SDK, never by hand.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import Pusher from 'pusher-js';
import PusherServer from 'pusher';
import Echo from 'laravel-echo';
import { EVENT_TIMEOUT_MS, Recorder, SILENCE_MS, once, sleep, withTimeout } from './wait.mjs';

export { Pusher, PusherServer, Echo };

/** A secret that no configured app uses: signatures made with it must be rejected. */
export const WRONG_SECRET = 'not-the-app-secret';

/** `^\d+\.\d+$`, the socket id format the server SDKs and Laravel's `toOthers` rely on. */
export const SOCKET_ID_RE = /^\d+\.\d+$/;

/** A channel-name-safe random suffix so that tests sharing one broker never share a channel. */
export function uniq(prefix = '') {
  return `${prefix}${Date.now().toString(36)}${randomBytes(4).toString('hex')}`;
}

/** The official server SDK pointed at the broker's HTTP API. */
export function serverSdk(broker, app = broker.app, overrides = {}) {
  return new PusherServer({
    appId: app.id,
    key: app.key,
    secret: app.secret,
    host: broker.host,
    port: broker.port,
    useTLS: broker.tls,
    timeout: 5_000,
    ...overrides,
  });
}

/** Awaits an SDK request that must fail with `status`; resolves with the parsed JSON body (or text). */
export async function expectHttpError(promise, status) {
  let err;
  try {
    const res = await promise;
    assert.fail(`expected HTTP ${status}, got ${res.status}: ${await res.text()}`);
  } catch (e) {
    if (e instanceof assert.AssertionError) throw e;
    err = e;
  }
  assert.equal(err.status, status, `expected HTTP ${status}, got ${err.status} (${err.message}) body=${err.body}`);
  try {
    return JSON.parse(err.body);
  } catch {
    return err.body;
  }
}

const openClients = new Set();

/**
 * Resolves with `{event, data}` for whichever of `events` a pusher-js emitter fires first;
 * every handler is unbound afterwards.
 */
export function firstOf(emitter, events, timeoutMs, what) {
  const handlers = [];
  const p = new Promise((res) => {
    for (const event of events) {
      const h = (data) => res({ event, data });
      handlers.push([event, h]);
      emitter.bind(event, h);
    }
  });
  return withTimeout(p, timeoutMs, what).finally(() => {
    for (const [event, h] of handlers) emitter.unbind(event, h);
  });
}

/** Disconnects every client created by this module that is still open (file-level safety net). */
export function disconnectAll() {
  for (const c of [...openClients]) c.disconnect();
}

function secretFor(authSecret, app, channelName) {
  if (typeof authSecret === 'function') return authSecret(channelName);
  return authSecret ?? app.secret;
}

/**
 * pusher-js options that point at the broker. The channel authorizer and the user authenticator
 * are `customHandler`s that sign with the official server SDK.
 *
 * @param {object} opts
 * @param {object} opts.app the app whose key (and by default secret) is used
 * @param {string|function} [opts.authSecret] secret to sign with, or `channelName => secret`
 * @param {{user_id:string,user_info?:object}} opts.user presence identity
 * @param {string} [opts.masterKey] base64 encryption master key, for `private-encrypted-` channels
 */
export function pusherOptions(broker, { app, authSecret, user, masterKey }) {
  const signerFor = (secret) =>
    new PusherServer({
      appId: app.id,
      key: app.key,
      secret,
      host: broker.host,
      port: broker.port,
      useTLS: broker.tls,
      encryptionMasterKeyBase64: masterKey,
    });
  return {
    wsHost: broker.host,
    wsPort: broker.port,
    wssPort: broker.port,
    forceTLS: broker.tls,
    enabledTransports: ['ws'],
    cluster: 'mt1',
    disableStats: true,
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, callback) => {
        try {
          const signer = signerFor(secretFor(authSecret, app, channelName));
          const presenceData = channelName.startsWith('presence-') ? user : undefined;
          callback(null, signer.authorizeChannel(socketId, channelName, presenceData));
        } catch (err) {
          callback(err, null);
        }
      },
    },
    userAuthentication: {
      customHandler: ({ socketId }, callback) => {
        try {
          const signer = signerFor(secretFor(authSecret, app, null));
          const userData = { id: user.user_id, user_info: user.user_info };
          if (user.watchlist) userData.watchlist = user.watchlist;
          callback(null, signer.authenticateUser(socketId, userData));
        } catch (err) {
          callback(err, null);
        }
      },
    },
  };
}

/** One pusher-js client with a recorder of every event it receives (internal ones included). */
export class PusherClient {
  constructor(pusher, user) {
    this.pusher = pusher;
    this.user = user;
    /** Every decoded server event: `{event, channel, data, user_id?}`. */
    this.messages = new Recorder();
    /** Every connection `error` (e.g. `{type:'PusherError', data:{code,message}}`). */
    this.errors = new Recorder();
    /** Every connection state change `{previous, current}`. */
    this.states = new Recorder();
    pusher.connection.bind('message', (m) => this.messages.fn(m));
    pusher.connection.bind('error', (e) => this.errors.fn(e));
    pusher.connection.bind('state_change', (s) => this.states.fn(s));
    openClients.add(this);
  }

  get socketId() {
    return this.pusher.connection.socket_id;
  }

  get state() {
    return this.pusher.connection.state;
  }

  /** Resolves once pusher-js reports `connected`; rejects on `failed`/`unavailable`. */
  async connected(timeoutMs = EVENT_TIMEOUT_MS) {
    if (this.state === 'connected') return this;
    const bad = ['failed', 'unavailable'];
    const [s] = await this.states.first((st) => st.current === 'connected' || bad.includes(st.current), {
      timeoutMs,
      what: `pusher-js to connect (state now ${this.state})`,
    });
    if (s.current !== 'connected') {
      const errs = this.errors.calls.map(([e]) => JSON.stringify(e)).join('; ');
      throw new Error(`pusher-js connection went ${s.current}; errors: ${errs || 'none'}`);
    }
    return this;
  }

  /** Subscribes and resolves with the channel once `pusher:subscription_succeeded` fired. */
  async subscribe(name, timeoutMs = EVENT_TIMEOUT_MS) {
    await this.connected();
    const channel = this.pusher.subscribe(name);
    const { event, data } = await firstOf(
      channel,
      ['pusher:subscription_succeeded', 'pusher:subscription_error'],
      timeoutMs,
      `subscription to ${name}`,
    );
    if (event !== 'pusher:subscription_succeeded') {
      throw new Error(`subscription to ${name} failed: ${JSON.stringify(data)}`);
    }
    channel.subscriptionData = data;
    return channel;
  }

  /** Subscribes and resolves with the `pusher:subscription_error` payload; fails if it succeeds. */
  async subscribeExpectingError(name, timeoutMs = EVENT_TIMEOUT_MS) {
    await this.connected();
    const channel = this.pusher.subscribe(name);
    const { event, data } = await firstOf(
      channel,
      ['pusher:subscription_succeeded', 'pusher:subscription_error'],
      timeoutMs,
      `subscription error on ${name}`,
    );
    if (event !== 'pusher:subscription_error') {
      throw new Error(`subscription to ${name} unexpectedly succeeded`);
    }
    return data;
  }

  /** Resolves with `[data, metadata]` of the next `event` on `channel` (a pusher-js Channel). */
  nextEvent(channel, event, { timeoutMs = EVENT_TIMEOUT_MS, filter } = {}) {
    return once(channel, event, { timeoutMs, filter: filter ? (d, m) => filter(d, m) : undefined }).then((args) =>
      Array.isArray(args) ? args : [args, undefined],
    );
  }

  /** The next raw server event matching `filter`, e.g. `m => m.event === 'pusher:error'`. */
  nextMessage(filter, opts) {
    return this.messages.next((m) => filter(m), opts).then(([m]) => m);
  }

  /** Messages received so far matching `filter`. */
  received(filter) {
    return this.messages.matching((m) => filter(m)).map(([m]) => m);
  }

  /**
   * Sends `pusher:ping` and waits for `pusher:pong`. The server handles one connection's messages
   * in order, so everything this client sent before has been processed when the pong arrives.
   */
  async barrier(timeoutMs = EVENT_TIMEOUT_MS) {
    const pong = this.nextMessage((m) => m.event === 'pusher:pong', { timeoutMs, what: 'pusher:pong' });
    this.pusher.send_event('pusher:ping', {});
    await pong;
  }

  disconnect() {
    openClients.delete(this);
    this.pusher.disconnect();
  }
}

let userSeq = 0;

/** A fresh presence identity. */
export function newUser(name) {
  userSeq += 1;
  const user_id = name ? `${name}-${userSeq}-${randomBytes(2).toString('hex')}` : uniq('user-');
  return { user_id, user_info: { name: name ?? user_id } };
}

/**
 * A connected pusher-js client, disconnected when the test `t` ends.
 *
 * @param {import('node:test').TestContext} t
 * @param {object} broker
 * @param {object} [opts]
 * @param {object} [opts.app] app to connect to (default: the broker's first app)
 * @param {string|function} [opts.authSecret] signing secret, `WRONG_SECRET`, or `channel => secret`
 * @param {object} [opts.user] presence identity (default: a fresh one)
 * @param {boolean} [opts.waitConnected=true]
 * @param {string} [opts.masterKey] base64 encryption master key, for `private-encrypted-` channels
 */
export async function pusherClient(t, broker, { app = broker.app, authSecret, user = newUser(), waitConnected = true, masterKey } = {}) {
  const pusher = new Pusher(app.key, pusherOptions(broker, { app, authSecret, user, masterKey }));
  const client = new PusherClient(pusher, user);
  t.after(() => client.disconnect());
  if (waitConnected) await client.connected();
  return client;
}

/**
 * A laravel-echo instance, disconnected when `t` ends.
 *
 * `broadcaster: 'pusher'` is given a ready pusher-js instance through `client`;
 * `broadcaster: 'reverb'` builds its own from the options with the `Pusher` constructor, as a
 * Laravel app configured for Reverb does.
 */
export async function echoClient(t, broker, { broadcaster = 'pusher', app = broker.app, authSecret, user = newUser() } = {}) {
  let echo;
  let pusher;
  if (broadcaster === 'pusher') {
    pusher = new Pusher(app.key, pusherOptions(broker, { app, authSecret, user }));
    echo = new Echo({ broadcaster: 'pusher', client: pusher, withoutInterceptors: true });
  } else if (broadcaster === 'reverb') {
    const opts = pusherOptions(broker, { app, authSecret, user });
    delete opts.cluster; // Echo's reverb connector sets cluster to ''.
    echo = new Echo({ broadcaster: 'reverb', key: app.key, Pusher, withoutInterceptors: true, ...opts });
    pusher = echo.connector.pusher;
  } else {
    throw new Error(`unsupported broadcaster ${broadcaster}`);
  }
  const client = new PusherClient(pusher, user);
  t.after(() => {
    openClients.delete(client);
    echo.disconnect();
  });
  await client.connected();
  return { echo, client, user };
}

/** Resolves once an Echo channel fired `.subscribed()`; rejects on `.error()`. */
export function echoSubscribed(echoChannel, timeoutMs = EVENT_TIMEOUT_MS) {
  return withTimeout(
    new Promise((res, rej) => {
      echoChannel.subscribed(() => res(echoChannel));
      echoChannel.error((e) => rej(new Error(`Echo subscription failed: ${JSON.stringify(e)}`)));
    }),
    timeoutMs,
    'Echo subscribed()',
  );
}

/** Waits `ms` and asserts that `recorder`-style `count()` did not grow meanwhile. */
export async function expectSilence(count, what, ms = SILENCE_MS) {
  const before = count();
  await sleep(ms);
  assert.equal(count(), before, `unexpected ${what}`);
}
