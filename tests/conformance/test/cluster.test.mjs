// Cluster mode: three brokers on 127.0.0.2-4 sharing one real Redis, with unmodified pusher-js
// clients spread over them and the pusher SDK publishing through any node.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { disconnectAll, echoClient, echoSubscribed, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { startCluster } from '../lib/redis.mjs';
import { EVENT_TIMEOUT_MS, SILENCE_MS, TEST_TIMEOUT_MS, sleep, waitFor, withTimeout } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

describe('cluster (3 nodes, one Redis)', () => {
  let cluster;
  let nodes = [];
  before(async () => {
    // Resolved once each node says it has synchronized with Redis.
    cluster = await startCluster(['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    nodes = cluster.nodes;
  });
  after(async () => {
    disconnectAll();
    await cluster?.stop();
  });

  it('an event published through one node reaches pusher-js clients on every node once', T, async (t) => {
    const name = uniq('orders-');
    const clients = await Promise.all(nodes.map((node) => pusherClient(t, node)));
    const channels = await Promise.all(clients.map((c) => c.subscribe(name)));
    const got = channels.map(() => []);
    channels.forEach((channel, i) => channel.bind('shipped', (data) => got[i].push(data)));
    await serverSdk(nodes[1]).trigger(name, 'shipped', { id: 7 });
    await waitFor(() => got.every((g) => g.length === 1), { what: 'every client to get the event' });
    await sleep(SILENCE_MS);
    assert.deepEqual(got, [[{ id: 7 }], [{ id: 7 }], [{ id: 7 }]]);
    const info = await serverSdk(nodes[2]).get({ path: `/channels/${name}`, params: { info: 'subscription_count' } });
    assert.equal((await info.json()).subscription_count, 3);
  });

  it('presence members are shared: joins and leaves on one node are seen on the others', T, async (t) => {
    const name = uniq('presence-room-');
    const alice = await pusherClient(t, nodes[0], { user: newUser('alice') });
    const aliceChannel = await alice.subscribe(name);
    const bob = await pusherClient(t, nodes[1], { user: newUser('bob') });
    const bobChannel = await bob.subscribe(name);
    assert.equal(bobChannel.members.count, 2, 'bob sees alice, who is on another node');
    await waitFor(() => aliceChannel.members.count === 2, { what: 'alice to see bob' });
    const left = alice.nextEvent(aliceChannel, 'pusher:member_removed');
    bob.pusher.disconnect();
    const [member] = await left;
    assert.equal(member.id, bob.user.user_id);
    assert.equal(aliceChannel.members.count, 1);
  });

  it("pusher-js's user.watchlist hears a user on another node come online and go offline", T, async (t) => {
    const bob = newUser('bob');
    const watcher = await pusherClient(t, nodes[0], { user: { ...newUser('watcher'), watchlist: [bob.user_id] } });
    const online = new Promise((resolve) => watcher.pusher.user.watchlist.bind('online', resolve));
    const offline = new Promise((resolve) => watcher.pusher.user.watchlist.bind('offline', resolve));
    const signedIn = async (client) => {
      const success = client.nextMessage((m) => m.event === 'pusher:signin_success', { what: 'pusher:signin_success' });
      client.pusher.signin();
      await success;
    };
    await signedIn(watcher);
    const bobClient = await pusherClient(t, nodes[2], { user: bob });
    await signedIn(bobClient);
    assert.deepEqual((await withTimeout(online, EVENT_TIMEOUT_MS, 'online')).user_ids, [bob.user_id]);
    bobClient.disconnect();
    assert.deepEqual((await withTimeout(offline, EVENT_TIMEOUT_MS, 'offline')).user_ids, [bob.user_id]);
  });

  it("laravel-echo's toOthers spares the sender's socket on another node", T, async (t) => {
    const name = uniq('chat-');
    const sender = await echoClient(t, nodes[0], { broadcaster: 'reverb' });
    const other = await echoClient(t, nodes[2], { broadcaster: 'reverb' });
    const seen = { sender: 0, other: 0 };
    const senderChannel = sender.echo.channel(name).listen('.message', () => seen.sender++);
    const otherChannel = other.echo.channel(name).listen('.message', () => seen.other++);
    await Promise.all([echoSubscribed(senderChannel), echoSubscribed(otherChannel)]);
    await serverSdk(nodes[1]).trigger(name, 'message', { text: 'hi' }, { socket_id: sender.echo.socketId() });
    await waitFor(() => seen.other === 1, { what: 'the other client to get the message' });
    await sleep(SILENCE_MS);
    assert.deepEqual(seen, { sender: 0, other: 1 });
  });
});
