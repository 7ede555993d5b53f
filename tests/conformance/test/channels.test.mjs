// Public and private channels driven by pusher-js, events published with the official server SDK
// (PROTOCOL.md, "Channels" and "HTTP API").

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker } from '../lib/broker.mjs';
import { WRONG_SECRET, disconnectAll, expectSilence, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { TEST_TIMEOUT_MS } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

describe('channels', () => {
  let broker;
  let sdk;
  before(async () => {
    broker = await startBroker();
    sdk = serverSdk(broker);
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('subscribing to a public channel fires pusher:subscription_succeeded', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('news-');
    const channel = await client.subscribe(name);
    assert.equal(channel.subscribed, true);
    const [internal] = client.received((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name);
    assert.ok(internal, 'the server sent pusher_internal:subscription_succeeded for the channel');
  });

  it('an event triggered with the server SDK arrives with its data', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('news-');
    const channel = await client.subscribe(name);
    const got = client.nextEvent(channel, 'headline');
    const res = await sdk.trigger(name, 'headline', { title: 'hello', n: 1, nested: { ok: true } });
    assert.equal(res.status, 200);
    const [data] = await got;
    assert.deepEqual(data, { title: 'hello', n: 1, nested: { ok: true } });
  });

  it('an event whose data is a plain string arrives as that string', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('news-');
    const channel = await client.subscribe(name);
    const got = client.nextEvent(channel, 'text');
    await sdk.trigger(name, 'text', 'just words');
    const [data] = await got;
    assert.equal(data, 'just words');
  });

  it('an event triggered to several channels arrives on each of them', T, async (t) => {
    const client = await pusherClient(t, broker);
    const names = [uniq('multi-a-'), uniq('multi-b-'), uniq('multi-c-')];
    const channels = [];
    for (const n of names) channels.push(await client.subscribe(n));
    const got = channels.map((c) => client.nextEvent(c, 'fanout'));
    await sdk.trigger(names, 'fanout', { to: 'all' });
    for (const [data] of await Promise.all(got)) assert.deepEqual(data, { to: 'all' });
  });

  it('an event triggered with socket_id is not delivered to that socket but is to the others', T, async (t) => {
    const excluded = await pusherClient(t, broker);
    const other = await pusherClient(t, broker);
    const name = uniq('excl-');
    const exChannel = await excluded.subscribe(name);
    const otherChannel = await other.subscribe(name);
    const seen = [];
    exChannel.bind('update', (d) => seen.push(d));
    const otherGot = other.nextEvent(otherChannel, 'update');
    await sdk.trigger(name, 'update', { v: 1 }, { socket_id: excluded.socketId });
    assert.deepEqual((await otherGot)[0], { v: 1 });
    // A later event on the same channel is the marker: once it arrives, the excluded one is not coming.
    const marker = excluded.nextEvent(exChannel, 'marker');
    await sdk.trigger(name, 'marker', {});
    await marker;
    await expectSilence(() => seen.length, 'delivery to the excluded socket', 200);
    assert.deepEqual(seen, []);
  });

  it('a private channel with a valid signature subscribes', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('private-orders-');
    const channel = await client.subscribe(name);
    const got = client.nextEvent(channel, 'shipped');
    await sdk.trigger(name, 'shipped', { id: 7 });
    assert.deepEqual((await got)[0], { id: 7 });
  });

  it('a private channel signed with the wrong secret gets pusher:subscription_error with status 401', T, async (t) => {
    const good = uniq('private-good-');
    const bad = uniq('private-bad-');
    const client = await pusherClient(t, broker, {
      authSecret: (channel) => (channel === bad ? WRONG_SECRET : broker.app.secret),
    });
    const error = await client.subscribeExpectingError(bad);
    assert.equal(error.status, 401, JSON.stringify(error));
    assert.equal(error.type, 'AuthError', JSON.stringify(error));
    const [frame] = client.received((m) => m.event === 'pusher:subscription_error' && m.channel === bad);
    assert.ok(frame, 'the error came from the server, on that channel');
    assert.equal(client.state, 'connected', 'the connection stays open');
    // The same connection can still subscribe with a good signature and receive events.
    const channel = await client.subscribe(good);
    const got = client.nextEvent(channel, 'ok');
    await sdk.trigger(good, 'ok', { fine: true });
    assert.deepEqual((await got)[0], { fine: true });
  });

  it('a private channel signed with the wrong secret receives no events', T, async (t) => {
    const bad = uniq('private-bad-');
    const client = await pusherClient(t, broker, { authSecret: WRONG_SECRET });
    await client.subscribeExpectingError(bad);
    await sdk.trigger(bad, 'leak', { secret: 1 });
    await client.barrier();
    await expectSilence(() => client.received((m) => m.event === 'leak').length, 'event on an unauthorized channel');
  });

  it('a channel named privateer- is public and needs no signature', T, async (t) => {
    // pusher-js itself treats the name as public and sends an empty auth; a broker that matched
    // the prefix without its hyphen would demand a signature and refuse.
    const client = await pusherClient(t, broker, { authSecret: WRONG_SECRET });
    const name = uniq('privateer-x');
    const channel = await client.subscribe(name);
    const got = client.nextEvent(channel, 'ahoy');
    await sdk.trigger(name, 'ahoy', { ship: 1 });
    assert.deepEqual((await got)[0], { ship: 1 });
  });

  it('a channel named presenceful- is public and needs no channel_data', T, async (t) => {
    const client = await pusherClient(t, broker, { authSecret: WRONG_SECRET });
    await client.subscribe(uniq('presenceful-'));
  });

  it('after unsubscribing a channel no more events arrive on it', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('unsub-');
    const channel = await client.subscribe(name);
    const first = client.nextEvent(channel, 'tick');
    await sdk.trigger(name, 'tick', { n: 1 });
    await first;
    client.pusher.unsubscribe(name);
    await client.barrier();
    await sdk.trigger(name, 'tick', { n: 2 });
    await expectSilence(
      () => client.received((m) => m.channel === name && m.event === 'tick').length,
      'event after unsubscribe',
    );
    assert.equal(client.received((m) => m.channel === name && m.event === 'tick').length, 1);
  });

  it('an unsubscribe gets no reply and the connection stays usable', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('unsub-');
    await client.subscribe(name);
    const before = client.messages.calls.length;
    client.pusher.unsubscribe(name);
    await client.barrier();
    const after = client.received(() => true).slice(before).map((m) => m.event);
    assert.deepEqual(after, ['pusher:pong']);
  });
});
