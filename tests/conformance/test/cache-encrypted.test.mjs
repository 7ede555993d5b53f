import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { startBroker } from '../lib/broker.mjs';
import { pusherClient, serverSdk, subscribed, nextEvent, waitFor, rawSocket, disconnectAll } from '../lib/clients.mjs';

describe('cache channels', () => {
  let broker;
  let sdk;
  before(async () => {
    broker = await startBroker();
    sdk = serverSdk(broker);
  });
  after(() => broker.stop());

  it('an empty cache channel sends pusher:cache_miss after subscribing', async () => {
    const client = pusherClient(broker);
    const channel = client.subscribe('cache-empty');
    await waitFor((resolve) => channel.bind('pusher:cache_miss', resolve), 'cache_miss');
    disconnectAll(client);
  });

  it('a late subscriber gets the last event at once', async () => {
    await sdk.trigger('cache-scores', 'score', { home: 1 });
    await sdk.trigger('cache-scores', 'score', { home: 2 });
    const client = pusherClient(broker);
    const channel = client.subscribe('cache-scores');
    const { data } = await nextEvent(channel, 'score');
    assert.deepEqual(data, { home: 2 });
    disconnectAll(client);
  });

  it('private and presence cache channels replay too', async () => {
    await sdk.trigger(['private-cache-a', 'presence-cache-b'], 'state', 'on');
    const client = pusherClient(broker, { presence: () => ({ user_id: 'c1' }) });
    const first = nextEvent(client.subscribe('private-cache-a'), 'state');
    const second = nextEvent(client.subscribe('presence-cache-b'), 'state');
    assert.equal((await first).data, 'on');
    assert.equal((await second).data, 'on');
    disconnectAll(client);
  });
});

describe('end-to-end encrypted channels', () => {
  const masterKey = randomBytes(32).toString('base64');
  let broker;
  before(async () => { broker = await startBroker(); });
  after(() => broker.stop());

  it('pusher-js decrypts what the server SDK encrypted; the broker only relays ciphertext', async () => {
    const sdk = serverSdk(broker, undefined, { masterKey });
    const client = pusherClient(broker, { masterKey });
    const { channel } = await subscribed(client, 'private-encrypted-vault');
    const got = nextEvent(channel, 'secret');
    // A raw subscriber signed like a private channel sees only the ciphertext envelope.
    const raw = await rawSocket(broker, '/app/app-key?protocol=7');
    const hello = await raw.next((m) => m.event === 'pusher:connection_established');
    const socketId = JSON.parse(hello.data).socket_id;
    const { auth } = sdk.authorizeChannel(socketId, 'private-encrypted-vault');
    raw.send({ event: 'pusher:subscribe', data: { channel: 'private-encrypted-vault', auth } });
    await raw.next((m) => m.event === 'pusher_internal:subscription_succeeded');
    await sdk.trigger('private-encrypted-vault', 'secret', { pin: 1234 });
    assert.deepEqual((await got).data, { pin: 1234 });
    const envelope = JSON.parse((await raw.next((m) => m.event === 'secret')).data);
    assert.ok(envelope.nonce && envelope.ciphertext);
    assert.ok(!JSON.stringify(envelope).includes('1234'));
    raw.close();
    disconnectAll(client);
  });

  it('client events are refused on encrypted channels', async () => {
    const client = pusherClient(broker, { masterKey });
    await subscribed(client, 'private-encrypted-chat');
    const error = waitFor((resolve) => client.connection.bind('error', resolve), 'pusher:error');
    client.send_event('client-x', { a: 1 }, 'private-encrypted-chat');
    assert.equal((await error).data.code, 4305);
    disconnectAll(client);
  });
});
