import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../lib/broker.mjs';
import { pusherClient, serverSdk, subscribed, nextEvent, nothingWithin, disconnectAll } from '../lib/clients.mjs';

function as(user) {
  return () => ({ user_id: user, user_info: { name: user } });
}

describe('presence channels', () => {
  let broker;
  let sdk;
  before(async () => {
    broker = await startBroker();
    sdk = serverSdk(broker);
  });
  after(() => broker.stop());

  it('joining lists me; a second user fires member_added on the first', async () => {
    const alice = pusherClient(broker, { presence: as('alice') });
    const { channel: aliceChannel } = await subscribed(alice, 'presence-room1');
    assert.equal(aliceChannel.members.count, 1);
    assert.equal(aliceChannel.members.me.id, 'alice');
    const added = nextEvent(aliceChannel, 'pusher:member_added');
    const bob = pusherClient(broker, { presence: as('bob') });
    const { channel: bobChannel } = await subscribed(bob, 'presence-room1');
    assert.equal(bobChannel.members.count, 2);
    const { data: member } = await added;
    assert.equal(member.id, 'bob');
    assert.deepEqual(member.info, { name: 'bob' });
    disconnectAll(alice, bob);
  });

  it('the same user on two sockets is one member; removed only after the last leaves', async () => {
    const observer = pusherClient(broker, { presence: as('observer') });
    const { channel: seen } = await subscribed(observer, 'presence-room2');
    const added = nextEvent(seen, 'pusher:member_added');
    const tab1 = pusherClient(broker, { presence: as('carol') });
    await subscribed(tab1, 'presence-room2');
    await added;
    const noSecondAdd = nothingWithin(seen, 'pusher:member_added');
    const tab2 = pusherClient(broker, { presence: as('carol') });
    const { channel: tab2Channel } = await subscribed(tab2, 'presence-room2');
    assert.equal(tab2Channel.members.count, 2);
    await noSecondAdd;

    const { users } = await (await sdk.get({ path: '/channels/presence-room2/users' })).json();
    assert.deepEqual(users.map((u) => u.id).sort(), ['carol', 'observer']);

    const noRemoval = nothingWithin(seen, 'pusher:member_removed');
    tab1.disconnect();
    await noRemoval;
    assert.equal(seen.members.count, 2);
    const removed = nextEvent(seen, 'pusher:member_removed');
    tab2.disconnect();
    assert.equal((await removed).data.id, 'carol');
    assert.equal(seen.members.count, 1);
    disconnectAll(observer);
  });

  it('HTTP API reports user_count and subscription_count', async () => {
    const a = pusherClient(broker, { presence: as('u1') });
    const b = pusherClient(broker, { presence: as('u1') });
    const c = pusherClient(broker, { presence: as('u2') });
    for (const client of [a, b, c]) await subscribed(client, 'presence-counted');

    const one = await (await sdk.get({ path: '/channels/presence-counted', params: { info: 'subscription_count,user_count' } })).json();
    assert.deepEqual(one, { occupied: true, subscription_count: 3, user_count: 2 });

    const list = await (await sdk.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
    assert.deepEqual(list.channels['presence-counted'], { user_count: 2 });
    disconnectAll(a, b, c);
  });

  it('user_count for a non-presence channel is a 400', async () => {
    const response = await sdk.get({ path: '/channels/public-x', params: { info: 'user_count' } }).catch((e) => e);
    assert.equal(response.status, 400);
  });
});
