// User authentication beyond the happy path covered in http-api.test.mjs: refused sign-ins,
// #server-to-user channels of other users, and terminate_connections across several sockets.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startBroker } from '../lib/broker.mjs';
import { WRONG_SECRET, disconnectAll, newUser, pusherClient, serverSdk } from '../lib/clients.mjs';
import { dataOf, rawClient } from '../lib/raw.mjs';
import { EVENT_TIMEOUT_MS, TEST_TIMEOUT_MS, waitFor, withTimeout } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

async function signedIn(client) {
  const success = client.nextMessage((m) => m.event === 'pusher:signin_success', { what: 'pusher:signin_success' });
  client.pusher.signin();
  await success;
  await waitFor(() => client.pusher.user.serverToUserChannel?.subscribed, { what: '#server-to-user subscription' });
}

describe('user authentication', () => {
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

  it('a sign-in with a numeric id (a Laravel user id) is admitted and answered as its string', T, async (t) => {
    // Laravel's PHP SDK signs `{"id":42}`; the Node SDK refuses a numeric id, so sign here.
    const raw = rawClient(t, broker);
    const socketId = JSON.parse((await raw.established()).data).socket_id;
    const id = 100_000 + Math.floor(Math.random() * 800_000);
    const userData = JSON.stringify({ id, user_info: { name: 'Numeric' } });
    const signature = createHmac('sha256', broker.app.secret).update(`${socketId}::user::${userData}`).digest('hex');
    raw.send({ event: 'pusher:signin', data: { auth: `${broker.app.key}:${signature}`, user_data: userData } });
    const success = await raw.event('pusher:signin_success');
    assert.deepEqual(JSON.parse(dataOf(success).user_data), { id: String(id), user_info: { name: 'Numeric' } });
  });

  it('a sign-in signed with the wrong secret is refused with 4009', T, async (t) => {
    const client = await pusherClient(t, broker, { authSecret: WRONG_SECRET });
    const error = client.errors.next((e) => e.data?.code === 4009, { what: '4009' });
    client.pusher.signin();
    await error;
  });

  it('#server-to-user channels refuse sockets not signed in as that user', T, async (t) => {
    // pusher-js never subscribes to another user's channel itself, so speak the protocol raw.
    const raw = rawClient(t, broker);
    await raw.established();
    raw.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-someone-else' } });
    const error = await raw.event('pusher:subscription_error');
    assert.equal(error.data.status, 403);
  });

  it('terminate_connections closes every socket of that user and no other', T, async (t) => {
    const leaver = newUser('leaver');
    const tabs = [await pusherClient(t, broker, { user: leaver }), await pusherClient(t, broker, { user: leaver })];
    const bystander = await pusherClient(t, broker, { user: newUser('stayer') });
    for (const client of [...tabs, bystander]) await signedIn(client);
    const terminated = tabs.map((c) => c.errors.next((e) => e.data?.code === 4009, { what: 'terminated' }));
    const response = await sdk.terminateUserConnections(leaver.user_id);
    assert.equal(response.status, 200);
    await Promise.all(terminated);
    await bystander.barrier();
    assert.equal(bystander.state, 'connected');
  });
});

describe('watchlists', () => {
  let broker;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('user.watchlist gets online and offline events for watched users', T, async (t) => {
    const bob = newUser('bob');
    const watcher = await pusherClient(t, broker, { user: { ...newUser('watcher'), watchlist: [bob.user_id] } });
    const online = new Promise((resolve) => watcher.pusher.user.watchlist.bind('online', resolve));
    const offline = new Promise((resolve) => watcher.pusher.user.watchlist.bind('offline', resolve));
    await signedIn(watcher);
    const bobClient = await pusherClient(t, broker, { user: bob });
    await signedIn(bobClient);
    assert.deepEqual((await withTimeout(online, EVENT_TIMEOUT_MS, 'online')).user_ids, [bob.user_id]);
    bobClient.disconnect();
    assert.deepEqual((await withTimeout(offline, EVENT_TIMEOUT_MS, 'offline')).user_ids, [bob.user_id]);
  });
});
