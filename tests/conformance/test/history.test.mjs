// Channel history and recovery with unmodified pusher-js: a signed-in subscriber whose TCP
// connection is cut reconnects by itself and is replayed what was published meanwhile, between
// ringcast:replay_start and ringcast:replay_end; past the window nothing is replayed; another
// user gets no one else's replay; the history API pages the events (README, "History and
// recovery").

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { Pusher, PusherClient, disconnectAll, expectSilence, newUser, pusherOptions, serverSdk, uniq } from '../lib/clients.mjs';
import { startProxy } from '../lib/proxy.mjs';
import { connected, io, subscribe } from '../lib/socketio.mjs';
import { once, sleep, waitFor } from '../lib/wait.mjs';

const T = { timeout: 45_000 };

const HISTORY_APP = Object.freeze({
  ...MAIN_APP,
  history: { channels: ['private-hist.*'], recovery_secs: 30 },
});
/** A second app whose recovery window is one second. */
const SHORT_WINDOW_APP = Object.freeze({
  ...MAIN_APP,
  id: '100011',
  key: 'short-key',
  secret: 'short-secret',
  history: { channels: ['private-hist.*'], recovery_secs: 1 },
});

/** Every event a channel's bindings hear, in order: `[eventName, data]`. */
function recordChannel(channel) {
  const heard = [];
  channel.bind_global((event, data) => heard.push([event, data]));
  return heard;
}

describe('history and recovery', () => {
  let broker;
  let proxy;
  before(async () => {
    broker = await startBroker({ apps: [HISTORY_APP, SHORT_WINDOW_APP] });
    proxy = await startProxy(broker);
  });
  after(async () => {
    disconnectAll();
    await proxy?.stop();
    await broker?.stop();
  });

  /** A pusher-js client through the proxy, signed in as `user`, subscribed to `name`. */
  async function signedInSubscriber(t, app, user, name) {
    const pusher = new Pusher(app.key, pusherOptions(proxy, { app, user }));
    const client = new PusherClient(pusher, user);
    t.after(() => client.disconnect());
    await client.connected();
    const success = client.nextMessage((m) => m.event === 'pusher:signin_success', { what: 'pusher:signin_success' });
    pusher.signin();
    await success;
    const channel = await client.subscribe(name);
    return { client, channel, heard: recordChannel(channel) };
  }

  /** Cuts the network, and waits until the broker has seen the subscriber leave `name`. */
  async function cutAndWaitForLeave(sdk, name) {
    proxy.cut();
    await waitFor(
      async () => {
        const res = await sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
        return (await res.json()).subscription_count === 0;
      },
      { timeoutMs: 5_000, what: `the broker to see the subscriber leave ${name}` },
    );
  }

  async function publishNumbered(sdk, name, from, to) {
    for (let i = from; i <= to; i += 1) {
      const res = await sdk.trigger(name, 'message', { n: i });
      assert.equal(res.status, 200);
    }
  }

  it('a reconnecting signed-in subscriber is replayed exactly the 20 missed events, once', T, async (t) => {
    const sdk = serverSdk(broker, HISTORY_APP);
    const name = uniq('private-hist.');
    const { client, heard } = await signedInSubscriber(t, HISTORY_APP, newUser('alice'), name);
    await publishNumbered(sdk, name, 1, 2);
    await waitFor(() => heard.filter(([e]) => e === 'message').length === 2, { what: 'the two live events' });

    await cutAndWaitForLeave(sdk, name);
    await publishNumbered(sdk, name, 3, 22);
    const resubscribed = client.nextMessage(
      (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name,
      { timeoutMs: 15_000, what: 'the resubscription after the reconnect' },
    );
    proxy.restore();
    await resubscribed;
    await waitFor(() => heard.some(([e]) => e === 'ringcast:replay_end'), { timeoutMs: 5_000, what: 'ringcast:replay_end' });

    const afterLive = heard.slice(heard.findIndex(([e]) => e === 'ringcast:replay_start'));
    const [start, ...rest] = afterLive;
    assert.deepEqual(start, ['ringcast:replay_start', { count: 20, since: 2 }]);
    const replayed = rest.filter(([e]) => e === 'message').map(([, d]) => d.n);
    assert.deepEqual(replayed, Array.from({ length: 20 }, (_, i) => i + 3), 'the missed events, in order');
    assert.deepEqual(rest.at(-1), ['ringcast:replay_end', { count: 20 }]);
    await publishNumbered(sdk, name, 23, 23);
    await waitFor(() => heard.some(([e, d]) => e === 'message' && d.n === 23), { what: 'the next live event' });
    await expectSilence(() => heard.length, 'a second replay or a repeated event');
    const all = heard.filter(([e]) => e === 'message').map(([, d]) => d.n);
    assert.deepEqual(all, Array.from({ length: 23 }, (_, i) => i + 1), 'every event once, in order');
    assert.equal(heard.filter(([e]) => e === 'ringcast:replay_start').length, 1);
  });

  it('the history API returns the events after since', T, async () => {
    const sdk = serverSdk(broker, HISTORY_APP);
    const name = uniq('private-hist.');
    await publishNumbered(sdk, name, 1, 5);
    const res = await sdk.get({ path: `/channels/${name}/history`, params: { since: '3' } });
    assert.equal(res.status, 200);
    const page = await res.json();
    assert.deepEqual(page.events.map((e) => e.id), [4, 5]);
    assert.deepEqual(page.events.map((e) => [e.event, JSON.parse(e.data)]), [['message', { n: 4 }], ['message', { n: 5 }]]);
    assert.equal(page.truncated, false);
    assert.ok(page.events[0].published_at_ms > 1_700_000_000_000);
  });

  it('past the recovery window a reconnecting subscriber is replayed nothing', T, async (t) => {
    const sdk = serverSdk(broker, SHORT_WINDOW_APP);
    const name = uniq('private-hist.');
    const { client, heard } = await signedInSubscriber(t, SHORT_WINDOW_APP, newUser('late'), name);
    await cutAndWaitForLeave(sdk, name);
    await publishNumbered(sdk, name, 1, 3);
    await sleep(1_500);
    const resubscribed = client.nextMessage(
      (m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name,
      { timeoutMs: 15_000, what: 'the resubscription after the reconnect' },
    );
    proxy.restore();
    await resubscribed;
    await publishNumbered(sdk, name, 4, 4);
    await waitFor(() => heard.some(([e, d]) => e === 'message' && d.n === 4), { what: 'the next live event' });
    assert.deepEqual(heard.filter(([e]) => e !== 'pusher:subscription_succeeded').map(([e, d]) => [e, d.n]), [['message', 4]]);
  });

  it('another user subscribing after a departure gets no replay', T, async (t) => {
    const sdk = serverSdk(broker, HISTORY_APP);
    const name = uniq('private-hist.');
    const { client } = await signedInSubscriber(t, HISTORY_APP, newUser('leaver'), name);
    await cutAndWaitForLeave(sdk, name);
    client.disconnect();
    proxy.restore();
    await publishNumbered(sdk, name, 1, 3);
    const { heard } = await signedInSubscriber(t, HISTORY_APP, newUser('other'), name);
    await publishNumbered(sdk, name, 4, 4);
    await waitFor(() => heard.some(([e, d]) => e === 'message' && d.n === 4), { what: 'the live event' });
    assert.deepEqual(heard.filter(([e]) => e !== 'pusher:subscription_succeeded').map(([e, d]) => [e, d.n]), [['message', 4]]);
  });
});

describe('history offsets with socket.io-client (connection state recovery)', () => {
  const SIO_APP = Object.freeze({
    ...MAIN_APP,
    socketio: { path: '/socket.io', recovery_secs: 1 },
    history: { channels: ['hist.*'] },
  });
  let broker;
  before(async () => {
    broker = await startBroker({ apps: [SIO_APP] });
  });
  after(async () => {
    await broker?.stop();
  });

  it('a client back after its connection was given up sends its offset and is replayed what came after', T, async (t) => {
    const sdk = serverSdk(broker, SIO_APP);
    const channel = uniq('hist.');
    const socket = io(broker.httpBase, {
      path: '/socket.io',
      transports: ['websocket'],
      forceNew: true,
      // Back only after the server has given the connection up (recovery_secs = 1).
      reconnectionDelay: 3_000,
      reconnectionDelayMax: 3_000,
      randomizationFactor: 0,
    });
    t.after(() => socket.close());
    await connected(socket);
    await subscribe(socket, channel);
    const heard = [];
    socket.onAny((event, ...args) => args[0] === channel && heard.push([event, ...args.slice(1)]));
    await sdk.trigger(channel, 'Tick', { n: 1 });
    await waitFor(() => heard.length === 1, { what: 'the live event' });
    assert.deepEqual(heard[0], ['Tick', { n: 1 }, `${channel}:1`], 'the offset is the last argument');

    const dropped = once(socket, 'disconnect');
    socket.io.engine.close();
    await dropped;
    await sdk.trigger(channel, 'Tick', { n: 2 });
    await sdk.trigger(channel, 'Tick', { n: 3 });
    await once(socket, 'connect', { timeoutMs: 10_000 });
    assert.equal(socket.recovered, false, 'the connection itself was given up');
    heard.length = 0;
    await subscribe(socket, channel);
    await waitFor(() => heard.some(([e]) => e === 'ringcast:replay_end'), { what: 'ringcast:replay_end' });
    assert.deepEqual(heard, [
      ['subscription_succeeded'],
      ['ringcast:replay_start', { count: 2, since: 1 }],
      ['Tick', { n: 2 }, `${channel}:2`],
      ['Tick', { n: 3 }, `${channel}:3`],
      ['ringcast:replay_end', { count: 2 }],
    ]);
  });
});
