import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../lib/broker.mjs';
import { pusherClient, serverSdk, connected, waitFor, rawSocket, disconnectAll } from '../lib/clients.mjs';

/** Signs in and resolves once the #server-to-user channel is subscribed. */
async function signedIn(client) {
  await connected(client);
  client.signin();
  await waitFor((resolve) => {
    const check = () => {
      const channel = client.user.serverToUserChannel;
      if (channel?.subscribed) return resolve();
      setTimeout(check, 20);
    };
    check();
  }, 'sign-in and #server-to-user subscription');
}

describe('user authentication', () => {
  let broker;
  let sdk;
  before(async () => {
    broker = await startBroker();
    sdk = serverSdk(broker);
  });
  after(() => broker.stop());

  it('signin() succeeds and sendToUser reaches user.bind()', async () => {
    const client = pusherClient(broker, { user: { id: 'user-1', user_info: { name: 'One' } } });
    await signedIn(client);
    assert.equal(client.user.user_data.id, 'user-1');
    const got = waitFor((resolve) => client.user.bind('notice', resolve), 'user event');
    await sdk.sendToUser('user-1', 'notice', { text: 'hello' });
    assert.deepEqual(await got, { text: 'hello' });
    disconnectAll(client);
  });

  it("#server-to-user channels refuse sockets not signed in as that user", async () => {
    // pusher-js never subscribes to another user's channel itself, so speak the protocol raw.
    const raw = await rawSocket(broker, '/app/app-key?protocol=7');
    await raw.next((m) => m.event === 'pusher:connection_established');
    raw.send({ event: 'pusher:subscribe', data: { channel: '#server-to-user-user-1' } });
    const error = await raw.next((m) => m.event === 'pusher:subscription_error');
    assert.equal(error.data.status, 403);
    raw.close();
  });

  it('a sign-in signed with the wrong secret closes the connection with 4009', async () => {
    const client = pusherClient(broker, { user: { id: 'user-3' }, secret: 'wrong' });
    await connected(client);
    const error = waitFor((resolve) => client.connection.bind('error', resolve), 'pusher:error');
    client.signin();
    assert.equal((await error).data.code, 4009);
    disconnectAll(client);
  });

  it('terminateUserConnections closes every socket of that user only', async () => {
    const tab1 = pusherClient(broker, { user: { id: 'leaver' } });
    const tab2 = pusherClient(broker, { user: { id: 'leaver' } });
    const bystander = pusherClient(broker, { user: { id: 'stayer' } });
    for (const c of [tab1, tab2, bystander]) await signedIn(c);
    const closed = [tab1, tab2].map((c) => waitFor((resolve) => c.connection.bind('error', (e) => e.data?.code === 4009 && resolve()), 'terminated'));
    const response = await sdk.terminateUserConnections('leaver');
    assert.equal(response.status, 200);
    await Promise.all(closed);
    assert.equal(bystander.connection.state, 'connected');
    disconnectAll(tab1, tab2, bystander);
  });
});
