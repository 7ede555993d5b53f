import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../lib/broker.mjs';
import {
  pusherClient, serverSdk, connected, subscribed, nextEvent, nothingWithin, waitFor, disconnectAll,
} from '../lib/clients.mjs';

describe('public and private channels', () => {
  let broker;
  let sdk;
  before(async () => {
    broker = await startBroker();
    sdk = serverSdk(broker);
  });
  after(() => broker.stop());

  it('a public subscription receives events triggered with the server SDK', async () => {
    const client = pusherClient(broker);
    const { channel } = await subscribed(client, 'news');
    const got = nextEvent(channel, 'headline');
    await sdk.trigger('news', 'headline', { title: 'hello' });
    assert.deepEqual((await got).data, { title: 'hello' });
    disconnectAll(client);
  });

  it('one trigger reaches several channels', async () => {
    const client = pusherClient(broker);
    const { channel: a } = await subscribed(client, 'multi-a');
    const { channel: b } = await subscribed(client, 'multi-b');
    const gotA = nextEvent(a, 'e');
    const gotB = nextEvent(b, 'e');
    await sdk.trigger(['multi-a', 'multi-b'], 'e', 'x');
    assert.equal((await gotA).data, 'x');
    assert.equal((await gotB).data, 'x');
    disconnectAll(client);
  });

  it('socket_id excludes exactly that socket', async () => {
    const sender = pusherClient(broker);
    const other = pusherClient(broker);
    const { channel: senderChannel } = await subscribed(sender, 'exclusive');
    const { channel: otherChannel } = await subscribed(other, 'exclusive');
    const got = nextEvent(otherChannel, 'e');
    const silent = nothingWithin(senderChannel, 'e');
    await sdk.trigger('exclusive', 'e', 'x', { socket_id: sender.connection.socket_id });
    await got;
    await silent;
    disconnectAll(sender, other);
  });

  it('a private channel with a valid signature succeeds', async () => {
    const client = pusherClient(broker);
    const { channel } = await subscribed(client, 'private-orders');
    const got = nextEvent(channel, 'shipped');
    await sdk.trigger('private-orders', 'shipped', { id: 1 });
    assert.deepEqual((await got).data, { id: 1 });
    disconnectAll(client);
  });

  it('a bad signature gives pusher:subscription_error 401 and the connection stays open', async () => {
    const client = pusherClient(broker, { secret: 'wrong-secret' });
    await connected(client);
    const channel = client.subscribe('private-secret');
    const error = await waitFor((resolve) => channel.bind('pusher:subscription_error', resolve), 'subscription_error');
    assert.equal(error.status, 401);
    assert.equal(error.type, 'AuthError');
    assert.equal(client.connection.state, 'connected');
    const { channel: open } = await subscribed(client, 'still-works');
    const got = nextEvent(open, 'e');
    await sdk.trigger('still-works', 'e', 'y');
    assert.equal((await got).data, 'y');
    disconnectAll(client);
  });

  it('privateer-x is a public channel (prefixes include the hyphen)', async () => {
    const client = pusherClient(broker, { secret: 'wrong-secret' });
    await subscribed(client, 'privateer-x');
    disconnectAll(client);
  });

  it('unsubscribe stops delivery', async () => {
    const client = pusherClient(broker);
    const { channel } = await subscribed(client, 'leaving');
    client.unsubscribe('leaving');
    const silent = nothingWithin(channel, 'e');
    // Let the unsubscribe reach the broker before publishing.
    await new Promise((r) => setTimeout(r, 100));
    await sdk.trigger('leaving', 'e', 'x');
    await silent;
    disconnectAll(client);
  });
});
