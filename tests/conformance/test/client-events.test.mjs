// Client events (`client-*`) sent by pusher-js: private and presence channels only, never echoed,
// user_id on presence, rate limited per connection (PROTOCOL.md, "Client events").

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NO_CLIENT_EVENTS_APP, startBroker } from '../lib/broker.mjs';
import { disconnectAll, expectSilence, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { TEST_TIMEOUT_MS } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

/** The `code` of a pusher:error payload, whether the server sent data as an object or a string. */
const codeOf = (m) => (m.data && typeof m.data === 'object' ? Number(m.data.code) : undefined);

describe('client events', () => {
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

  async function pair(t, name, opts = {}) {
    const sender = await pusherClient(t, broker, { user: newUser('sender'), ...opts });
    const receiver = await pusherClient(t, broker, { user: newUser('receiver'), ...opts });
    const sChannel = await sender.subscribe(name);
    const rChannel = await receiver.subscribe(name);
    return { sender, receiver, sChannel, rChannel };
  }

  it('a client event on a private channel reaches the other subscriber and is not echoed to the sender', T, async (t) => {
    const name = uniq('private-chat-');
    const { sender, receiver, sChannel, rChannel } = await pair(t, name);
    const echoed = [];
    sChannel.bind('client-typing', (d) => echoed.push(d));
    const got = receiver.nextEvent(rChannel, 'client-typing');
    assert.equal(sChannel.trigger('client-typing', { who: 'sender' }), true);
    const [data] = await got;
    assert.deepEqual(data, { who: 'sender' });
    // A server event after the client event is the marker on the sender's side.
    const marker = sender.nextEvent(sChannel, 'marker');
    await sdk.trigger(name, 'marker', {});
    await marker;
    await expectSilence(() => echoed.length, 'echo of a client event to its sender', 200);
  });

  it('a client event on a presence channel carries the sender user_id as metadata', T, async (t) => {
    const name = uniq('presence-chat-');
    const { sender, receiver, sChannel, rChannel } = await pair(t, name);
    const got = receiver.nextEvent(rChannel, 'client-wave');
    sChannel.trigger('client-wave', { hi: 1 });
    const [data, metadata] = await got;
    assert.deepEqual(data, { hi: 1 });
    assert.equal(metadata.user_id, sender.user.user_id);
    const [frame] = receiver.received((m) => m.event === 'client-wave');
    assert.equal(frame.user_id, sender.user.user_id, 'user_id is a top-level field of the frame');
  });

  it('a client event on a private channel carries no user_id', T, async (t) => {
    const name = uniq('private-chat-');
    const { receiver, sChannel, rChannel } = await pair(t, name);
    const got = receiver.nextEvent(rChannel, 'client-ping');
    sChannel.trigger('client-ping', {});
    const [, metadata] = await got;
    assert.equal(metadata.user_id, undefined);
  });

  it('a client event on a public channel is refused with pusher:error and not delivered', T, async (t) => {
    const name = uniq('public-chat-');
    const { sender, receiver, sChannel } = await pair(t, name);
    const error = sender.nextMessage((m) => m.event === 'pusher:error', { what: 'pusher:error' });
    sChannel.trigger('client-shout', { loud: true });
    const frame = await error;
    assert.equal(typeof frame.data, 'object', JSON.stringify(frame));
    await receiver.barrier();
    await expectSilence(() => receiver.received((m) => m.event === 'client-shout').length, 'client event on a public channel');
    assert.equal(sender.state, 'connected', 'the sender stays connected');
  });

  it('a client event to a channel the sender is not subscribed to is refused and not delivered', T, async (t) => {
    const name = uniq('private-chat-');
    const receiver = await pusherClient(t, broker);
    await receiver.subscribe(name);
    const outsider = await pusherClient(t, broker);
    const error = outsider.nextMessage((m) => m.event === 'pusher:error', { what: 'pusher:error' });
    outsider.pusher.send_event('client-sneak', { in: true }, name);
    await error;
    await expectSilence(() => receiver.received((m) => m.event === 'client-sneak').length, 'client event from a non-member');
  });

  it('an app with client events disabled refuses them with pusher:error', T, async (t) => {
    const name = uniq('private-chat-');
    const { sender, receiver, sChannel } = await pair(t, name, { app: NO_CLIENT_EVENTS_APP });
    const error = sender.nextMessage((m) => m.event === 'pusher:error', { what: 'pusher:error' });
    sChannel.trigger('client-typing', {});
    await error;
    await expectSilence(() => receiver.received((m) => m.event === 'client-typing').length, 'client event on a disabled app');
  });

  it('more than 10 client events in one second yield pusher:error 4301 and the connection stays open', T, async (t) => {
    const name = uniq('private-burst-');
    const { sender, receiver, sChannel, rChannel } = await pair(t, name);
    const limited = sender.nextMessage((m) => m.event === 'pusher:error' && codeOf(m) === 4301, {
      what: 'pusher:error with code 4301',
    });
    for (let i = 0; i < 15; i++) sChannel.trigger('client-burst', { i });
    const frame = await limited;
    assert.equal(codeOf(frame), 4301);
    await sender.barrier();
    assert.equal(sender.state, 'connected', 'a rate-limited connection is not closed');
    const marker = receiver.nextEvent(rChannel, 'marker');
    await sdk.trigger(name, 'marker', {});
    await marker;
    const delivered = receiver.received((m) => m.event === 'client-burst').length;
    assert.ok(delivered >= 1 && delivered <= 10, `delivered ${delivered} of 15 (limit 10 per second)`);
  });

  it('exactly 10 client events in one second are all delivered', T, async (t) => {
    const name = uniq('private-burst-');
    const { sender, receiver, sChannel, rChannel } = await pair(t, name);
    const got = receiver.nextEvent(rChannel, 'client-burst', { filter: (d) => d.i === 9, timeoutMs: 5_000 });
    for (let i = 0; i < 10; i++) sChannel.trigger('client-burst', { i });
    await got;
    await sender.barrier();
    assert.equal(sender.received((m) => m.event === 'pusher:error').length, 0, 'no error at the limit');
    assert.equal(receiver.received((m) => m.event === 'client-burst').length, 10);
  });

  it('a 20 KB client event gets pusher:error 4306, is not delivered, and the connection stays open', T, async (t) => {
    const name = uniq('private-big-');
    const { sender, receiver, sChannel, rChannel } = await pair(t, name);
    const refused = sender.nextMessage((m) => m.event === 'pusher:error' && codeOf(m) === 4306, {
      what: 'pusher:error with code 4306',
    });
    sChannel.trigger('client-big', { text: 'x'.repeat(20 * 1024) });
    assert.equal(codeOf(await refused), 4306);
    const small = receiver.nextEvent(rChannel, 'client-small');
    sChannel.trigger('client-small', { after: true });
    assert.deepEqual((await small)[0], { after: true });
    assert.equal(sender.state, 'connected', 'the sender stays connected');
    assert.equal(receiver.received((m) => m.event === 'client-big').length, 0, 'the refused event was not delivered');
  });
});
