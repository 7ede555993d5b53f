// Presence channels: rosters de-duplicated by user_id, member_added / member_removed only at a
// user's first and last socket, and the HTTP views of the same state (PROTOCOL.md, "Presence").

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker } from '../lib/broker.mjs';
import { disconnectAll, expectHttpError, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { dataOf, rawClient } from '../lib/raw.mjs';
import { SILENCE_MS, TEST_TIMEOUT_MS, sleep, waitFor } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

/** Raw member events of one kind for one user seen by `client` on `channel`. */
function memberEvents(client, channel, kind, userId) {
  return client.received(
    (m) => m.channel === channel && m.event === `pusher_internal:${kind}` && m.data?.user_id === userId,
  );
}

/** Publishes a marker on `channel` and waits until `client` has it: earlier traffic was delivered. */
async function flush(sdk, client, pusherChannel) {
  const name = uniq('marker-');
  const got = client.nextEvent(pusherChannel, name);
  await sdk.trigger(pusherChannel.name, name, {});
  await got;
  await sleep(SILENCE_MS / 2);
}

describe('presence', () => {
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

  it('joining a presence channel returns members including me', T, async (t) => {
    const alice = newUser('alice');
    const client = await pusherClient(t, broker, { user: alice });
    const channel = await client.subscribe(uniq('presence-room-'));
    const members = channel.subscriptionData;
    assert.equal(members, channel.members, 'pusher-js passes the Members object');
    assert.equal(members.count, 1);
    assert.deepEqual(members.me, { id: alice.user_id, info: alice.user_info });
    assert.deepEqual(members.members, { [alice.user_id]: alice.user_info });
  });

  it('the presence subscription_succeeded data is a JSON string with ids, hash and count', T, async (t) => {
    const alice = newUser('alice');
    const name = uniq('presence-room-');
    const ws = rawClient(t, broker);
    const socketId = JSON.parse((await ws.established()).data).socket_id;
    const { auth, channel_data } = sdk.authorizeChannel(socketId, name, alice);
    const ok = ws.event('pusher_internal:subscription_succeeded');
    ws.send({ event: 'pusher:subscribe', data: { channel: name, auth, channel_data } });
    const frame = await ok;
    assert.equal(frame.channel, name);
    assert.equal(typeof frame.data, 'string', 'data must be a JSON-encoded string');
    assert.deepEqual(JSON.parse(frame.data), {
      presence: { ids: [alice.user_id], hash: { [alice.user_id]: alice.user_info }, count: 1 },
    });
  });

  it('a presence subscribe whose channel_data was altered after signing is refused', T, async (t) => {
    const alice = newUser('alice');
    const name = uniq('presence-room-');
    const ws = rawClient(t, broker);
    const socketId = JSON.parse((await ws.established()).data).socket_id;
    const { auth } = sdk.authorizeChannel(socketId, name, alice);
    const forged = JSON.stringify({ user_id: 'mallory', user_info: { name: 'mallory' } });
    const err = ws.event('pusher:subscription_error');
    ws.send({ event: 'pusher:subscribe', data: { channel: name, auth, channel_data: forged } });
    const frame = await err;
    assert.equal(frame.channel, name);
    assert.equal(dataOf(frame).status, 401);
  });

  it('a second user joining fires pusher:member_added on the first', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const name = uniq('presence-room-');
    const a = await pusherClient(t, broker, { user: alice });
    const aChannel = await a.subscribe(name);
    const added = a.nextEvent(aChannel, 'pusher:member_added');
    const b = await pusherClient(t, broker, { user: bob });
    const bChannel = await b.subscribe(name);
    const [member] = await added;
    assert.deepEqual(member, { id: bob.user_id, info: bob.user_info });
    assert.equal(aChannel.members.count, 2);
    assert.equal(bChannel.members.count, 2);
    assert.deepEqual(bChannel.members.members, {
      [alice.user_id]: alice.user_info,
      [bob.user_id]: bob.user_info,
    });
  });

  it('a user leaving fires pusher:member_removed on the others', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const name = uniq('presence-room-');
    const a = await pusherClient(t, broker, { user: alice });
    const aChannel = await a.subscribe(name);
    const b = await pusherClient(t, broker, { user: bob });
    await b.subscribe(name);
    await waitFor(() => aChannel.members.count === 2, { what: 'bob in alice roster' });
    const removed = a.nextEvent(aChannel, 'pusher:member_removed');
    b.pusher.unsubscribe(name);
    const [member] = await removed;
    assert.equal(member.id, bob.user_id);
    assert.equal(aChannel.members.count, 1);
  });

  it('the same user on two sockets is one member: one member_added, and member_removed only after the last socket leaves', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const name = uniq('presence-room-');
    const a = await pusherClient(t, broker, { user: alice });
    const aChannel = await a.subscribe(name);

    const b1 = await pusherClient(t, broker, { user: bob });
    await b1.subscribe(name);
    await waitFor(() => memberEvents(a, name, 'member_added', bob.user_id).length === 1, { what: 'first member_added' });

    const b2 = await pusherClient(t, broker, { user: bob });
    const b2Channel = await b2.subscribe(name);
    assert.equal(b2Channel.members.count, 2, 'the roster counts users, not sockets');
    assert.deepEqual(Object.keys(b2Channel.members.members).sort(), [alice.user_id, bob.user_id].sort());
    await flush(sdk, a, aChannel);
    assert.equal(memberEvents(a, name, 'member_added', bob.user_id).length, 1, 'only one member_added for bob');
    assert.equal(aChannel.members.count, 2);

    // A third user joining sees bob once.
    const carol = newUser('carol');
    const c = await pusherClient(t, broker, { user: carol });
    const cChannel = await c.subscribe(name);
    assert.equal(cChannel.members.count, 3);
    const [snapshot] = c.received((m) => m.event === 'pusher_internal:subscription_succeeded' && m.channel === name);
    assert.equal(snapshot.data.presence.count, 3);
    assert.equal(snapshot.data.presence.ids.filter((id) => id === bob.user_id).length, 1, 'ids are de-duplicated');

    // Bob's first socket leaves: he is still present through the second one.
    b1.disconnect();
    await sleep(SILENCE_MS);
    await flush(sdk, a, aChannel);
    assert.equal(memberEvents(a, name, 'member_removed', bob.user_id).length, 0, 'no member_removed while bob has a socket');
    assert.equal(aChannel.members.count, 3);

    // The last socket leaves: now bob is gone.
    const removed = a.nextEvent(aChannel, 'pusher:member_removed', { filter: (m) => m.id === bob.user_id });
    b2.disconnect();
    await removed;
    assert.equal(aChannel.members.count, 2);
    await flush(sdk, a, aChannel);
    assert.equal(memberEvents(a, name, 'member_removed', bob.user_id).length, 1, 'exactly one member_removed');
  });

  it('GET /channels/{presence}/users lists each user once', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const name = uniq('presence-room-');
    const a = await pusherClient(t, broker, { user: alice });
    await a.subscribe(name);
    const b1 = await pusherClient(t, broker, { user: bob });
    await b1.subscribe(name);
    const b2 = await pusherClient(t, broker, { user: bob });
    await b2.subscribe(name);
    const res = await sdk.get({ path: `/channels/${name}/users` });
    assert.equal(res.status, 200);
    const body = await res.json();
    const ids = body.users.map((u) => u.id).sort();
    assert.deepEqual(ids, [alice.user_id, bob.user_id].sort());
  });

  it('GET /channels/{name}/users on a non-presence channel is 400', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('private-room-');
    await client.subscribe(name);
    await expectHttpError(sdk.get({ path: `/channels/${name}/users` }), 400);
  });

  it('GET /channels?filter_by_prefix=presence-&info=user_count reports user counts', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const name = uniq('presence-count-');
    const publicName = uniq('public-count-');
    const a = await pusherClient(t, broker, { user: alice });
    await a.subscribe(name);
    await a.subscribe(publicName);
    const b1 = await pusherClient(t, broker, { user: bob });
    await b1.subscribe(name);
    const b2 = await pusherClient(t, broker, { user: bob });
    await b2.subscribe(name);
    const res = await sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(typeof body.channels, 'object');
    assert.deepEqual(body.channels[name], { user_count: 2 });
    for (const key of Object.keys(body.channels)) assert.ok(key.startsWith('presence-'), `${key} matches the prefix`);
    assert.equal(body.channels[publicName], undefined);
  });

  it('GET /channels/{name}?info=subscription_count,user_count reports sockets and users', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const name = uniq('presence-info-');
    const a = await pusherClient(t, broker, { user: alice });
    await a.subscribe(name);
    const b1 = await pusherClient(t, broker, { user: bob });
    await b1.subscribe(name);
    const b2 = await pusherClient(t, broker, { user: bob });
    await b2.subscribe(name);
    const res = await sdk.get({ path: `/channels/${name}`, params: { info: 'subscription_count,user_count' } });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.occupied, true);
    assert.equal(body.user_count, 2);
    assert.equal(body.subscription_count, 3);
  });

  it('GET /channels/{name} for a channel nobody is on is not occupied', T, async () => {
    const res = await sdk.get({ path: `/channels/${uniq('empty-')}` });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(body.occupied, false);
  });

  it('user_count requested for a non-presence channel is 400', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('public-uc-');
    await client.subscribe(name);
    await expectHttpError(sdk.get({ path: `/channels/${name}`, params: { info: 'user_count' } }), 400);
  });

  it('user_count requested with a non-presence prefix on GET /channels is 400', T, async () => {
    await expectHttpError(sdk.get({ path: '/channels', params: { filter_by_prefix: 'private-', info: 'user_count' } }), 400);
  });
});
