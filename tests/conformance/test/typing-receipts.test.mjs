// Typing indicators ([apps.typing]) and delivery receipts ([apps.receipts]) with unmodified
// pusher-js and socket.io-client: client-typing relayed and kept at the channel's home shard,
// expired after 5 s with a client-typing-stop from the member, listed by the signed typing API and
// by Socket.IO's typing:get acknowledgement; a published message with an id DELIVERED to the
// connected member and READ after ringcast:read, with its webhooks at a loopback receiver.

import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { disconnectAll, expectHttpError, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { sioClient } from '../lib/socketio.mjs';
import { TEST_TIMEOUT_MS, waitFor, withTimeout } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };
/** Long enough for the 5-second expiry and the shard tick after it. */
const EXPIRY = { timeout: 20_000 };
const EXPIRY_WAIT_MS = 9_000;

/** A loopback webhook receiver recording every event with the request's headers. */
async function startWebhookReceiver() {
  const events = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => (body += chunk));
    req.on('end', () => {
      for (const event of JSON.parse(body).events) events.push({ event, headers: req.headers });
      res.end('{}');
    });
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return { url: `http://127.0.0.1:${server.address().port}/hooks`, events, close: () => server.close() };
}

describe('typing indicators', () => {
  let broker;
  let sdk;
  let hooks;
  before(async () => {
    hooks = await startWebhookReceiver();
    broker = await startBroker({
      apps: [
        {
          ...MAIN_APP,
          socketio: {},
          typing: { channels: ['presence-chat.{id}'] },
          receipts: { channels: ['presence-chat.{id}'] },
          webhooks: [{ url: hooks.url, event_types: ['message_delivered', 'message_read'] }],
        },
      ],
    });
    sdk = serverSdk(broker);
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
    hooks?.close();
  });

  /** Alice and Bob, both members of a fresh chat. */
  async function chat(t) {
    const name = `presence-chat.${uniq('room')}`;
    const alice = await pusherClient(t, broker, { user: newUser('alice') });
    const bob = await pusherClient(t, broker, { user: newUser('bob') });
    const aliceChannel = await alice.subscribe(name);
    const bobChannel = await bob.subscribe(name);
    return { name, alice, bob, aliceChannel, bobChannel };
  }

  async function typingUsers(name) {
    const res = await sdk.get({ path: `/channels/${name}/typing` });
    return (await res.json()).users;
  }

  it('client-typing reaches the other member, expires after 5 s as a client-typing-stop from the member, and the API follows', EXPIRY, async (t) => {
    const { name, alice, bob, aliceChannel, bobChannel } = await chat(t);
    const typing = bob.nextEvent(bobChannel, 'client-typing');
    aliceChannel.trigger('client-typing', { draft: true });
    const [data, meta] = await typing;
    assert.deepEqual(data, { draft: true });
    assert.equal(meta.user_id, alice.user.user_id);
    await waitFor(async () => (await typingUsers(name)).length === 1, { what: 'the typing API to list alice' });
    const [listed] = await typingUsers(name);
    assert.equal(listed.id, alice.user.user_id);
    assert.equal(typeof listed.since_ms, 'number');

    const [stopData, stopMeta] = await bob.nextEvent(bobChannel, 'client-typing-stop', { timeoutMs: EXPIRY_WAIT_MS });
    assert.equal(stopMeta.user_id, alice.user.user_id);
    assert.deepEqual(stopData, { user_id: alice.user.user_id, expired: true });
    assert.deepEqual(await typingUsers(name), []);
  });

  it('client-typing-stop clears the flag at once', T, async (t) => {
    const { name, alice, bob, aliceChannel, bobChannel } = await chat(t);
    const typing = bob.nextEvent(bobChannel, 'client-typing');
    aliceChannel.trigger('client-typing', {});
    await typing;
    await waitFor(async () => (await typingUsers(name)).length === 1, { what: 'alice to be listed' });
    const stop = bob.nextEvent(bobChannel, 'client-typing-stop');
    aliceChannel.trigger('client-typing-stop', {});
    const [, meta] = await stop;
    assert.equal(meta.user_id, alice.user.user_id);
    await waitFor(async () => (await typingUsers(name)).length === 0, { what: 'the list to empty' });
  });

  it('the typing API refuses a channel without typing state (404) and a malformed name (400)', T, async () => {
    const body = await expectHttpError(sdk.get({ path: '/channels/presence-room.1/typing' }), 404);
    assert.match(body.error, /typing/);
    await expectHttpError(sdk.get({ path: `/channels/${'x'.repeat(300)}/typing` }), 400);
  });

  it('socket.io-client: the typing:get acknowledgement lists the typing member', T, async (t) => {
    const { name, alice, bob, aliceChannel, bobChannel } = await chat(t);
    const socket = await sioClient(t, broker);
    const carol = { user_id: uniq('carol-'), user_info: { name: 'Carol' } };
    const auth = sdk.authorizeChannel(socket.id, name, carol);
    const here = new Promise((res) => socket.on('presence:subscribed', (channel) => channel === name && res()));
    socket.emit('subscribe', { channel: name, auth: auth.auth, channel_data: auth.channel_data });
    await withTimeout(here, 3_000, 'presence:subscribed');

    const typing = bob.nextEvent(bobChannel, 'client-typing');
    aliceChannel.trigger('client-typing', {});
    await typing;
    await waitFor(async () => (await typingUsers(name)).length === 1, { what: 'alice to be listed' });
    const answer = await withTimeout(socket.emitWithAck('typing:get', { channel: name }), 3_000, 'typing:get ack');
    assert.equal(answer.users.length, 1);
    assert.equal(answer.users[0].id, alice.user.user_id);

    // The chat reference's own event drives the same state.
    const fromCarol = bob.nextEvent(bobChannel, 'client-typing');
    socket.emit('typing', { channel: name });
    const [, meta] = await fromCarol;
    assert.equal(meta.user_id, carol.user_id);
    const both = await withTimeout(socket.emitWithAck('typing:get', { channel: name }), 3_000, 'typing:get ack');
    assert.deepEqual(both.users.map((u) => u.id), [alice.user.user_id, carol.user_id]);

    const refused = await withTimeout(socket.emitWithAck('typing:get', { channel: 'presence-chat.elsewhere' }), 3_000, 'ack');
    assert.match(refused.error, /not subscribed/);
  });

  async function status(id) {
    const res = await sdk.get({ path: `/messages/${id}/status` });
    return res.json();
  }

  it('a published message with an id is DELIVERED to the connected member, nothing for one who left, READ after ringcast:read, with webhooks', T, async (t) => {
    const { name, bob, bobChannel } = await chat(t);
    const carol = await pusherClient(t, broker, { user: newUser('carol') });
    await carol.subscribe(name);
    carol.disconnect();
    await waitFor(async () => {
      const res = await sdk.get({ path: `/channels/${name}/users` });
      return (await res.json()).users.length === 2;
    }, { what: 'carol to leave' });

    const id = uniq('msg-');
    const got = bob.nextEvent(bobChannel, 'message');
    await sdk.trigger(name, 'message', { id, body: 'hello' });
    const [data] = await got;
    assert.equal(data.id, id);
    await waitFor(async () => {
      const s = await status(id);
      return s.recipients?.some((r) => r.recipient === bob.user.user_id);
    }, { what: 'bob to be DELIVERED' });
    const delivered = await status(id);
    assert.equal(delivered.message_id, id);
    assert.equal(delivered.channel, name);
    const bobs = delivered.recipients.find((r) => r.recipient === bob.user.user_id);
    assert.equal(bobs.status, 'DELIVERED');
    assert.equal(typeof bobs.delivered_at_ms, 'number');
    assert.equal(bobs.read_at_ms, null);
    assert.ok(!delivered.recipients.some((r) => r.recipient === carol.user.user_id), 'carol had left');

    bob.pusher.send_event('ringcast:read', { channel: name, id });
    await waitFor(async () => (await status(id)).recipients.find((r) => r.recipient === bob.user.user_id)?.status === 'READ', {
      what: 'bob to be READ',
    });

    await waitFor(() => hooks.events.some(({ event }) => event.name === 'message_read' && event.message_id === id), {
      what: 'the message_read webhook',
    });
    const mine = hooks.events.filter(({ event }) => event.message_id === id && event.recipient === bob.user.user_id);
    assert.deepEqual(mine.map(({ event }) => event.name), ['message_delivered', 'message_read']);
    assert.equal(mine[0].event.channel, name);
    assert.match(mine[0].headers['x-pusher-signature'], /^[0-9a-f]{64}$/);
  });

  it('socket.io-client: a Socket.IO member is DELIVERED and READ after message:seen', T, async (t) => {
    const { name } = await chat(t);
    const socket = await sioClient(t, broker);
    const dan = { user_id: uniq('dan-'), user_info: { name: 'Dan' } };
    const auth = sdk.authorizeChannel(socket.id, name, dan);
    const here = new Promise((res) => socket.on('presence:subscribed', (channel) => channel === name && res()));
    socket.emit('subscribe', { channel: name, auth: auth.auth, channel_data: auth.channel_data });
    await withTimeout(here, 3_000, 'presence:subscribed');
    const id = uniq('sio-msg-');
    const got = new Promise((res) => socket.on('message', (channel, data) => channel === name && data.id === id && res()));
    await sdk.trigger(name, 'message', { id });
    await withTimeout(got, 3_000, 'the message over Socket.IO');
    const dans = async () => (await status(id)).recipients?.find((r) => r.recipient === dan.user_id);
    await waitFor(async () => (await dans())?.status === 'DELIVERED', { what: 'dan to be DELIVERED' });
    socket.emit('message:seen', { channel: name, messageId: id });
    await waitFor(async () => (await dans())?.status === 'READ', { what: 'dan to be READ' });
  });

  it('the status of an unknown message id is 404 JSON', T, async () => {
    const body = await expectHttpError(sdk.get({ path: '/messages/never-sent/status' }), 404);
    assert.match(body.error, /no receipts/);
  });
});
