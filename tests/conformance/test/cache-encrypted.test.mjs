// Cache channels (last event replayed, or pusher:cache_miss) and end-to-end encrypted channels,
// where the broker relays ciphertext it cannot read (PROTOCOL.md, "Channels" and "Signatures").

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { disconnectAll, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { rawClient } from '../lib/raw.mjs';
import { TEST_TIMEOUT_MS } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

describe('cache channels', () => {
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

  it('an empty cache channel sends pusher:cache_miss after subscription_succeeded', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('cache-empty-');
    const miss = client.nextMessage((m) => m.event === 'pusher:cache_miss' && m.channel === name, { what: 'cache_miss' });
    await client.subscribe(name);
    await miss;
  });

  it('a late subscriber gets the last event right after subscribing', T, async (t) => {
    const name = uniq('cache-scores-');
    await sdk.trigger(name, 'score', { home: 1 });
    await sdk.trigger(name, 'score', { home: 2 });
    const client = await pusherClient(t, broker);
    const replay = client.nextMessage((m) => m.event === 'score' && m.channel === name, { what: 'cached score' });
    await client.subscribe(name);
    assert.deepEqual((await replay).data, { home: 2 });
  });

  it('private and presence cache channels replay too', T, async (t) => {
    const privateName = uniq('private-cache-');
    const presenceName = uniq('presence-cache-');
    await sdk.trigger([privateName, presenceName], 'state', 'on');
    const client = await pusherClient(t, broker);
    for (const name of [privateName, presenceName]) {
      const replay = client.nextMessage((m) => m.event === 'state' && m.channel === name, { what: `replay on ${name}` });
      await client.subscribe(name);
      assert.equal((await replay).data, 'on');
    }
  });
});

describe('end-to-end encrypted channels', () => {
  const masterKey = randomBytes(32).toString('base64');
  let broker;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('pusher-js decrypts what the SDK encrypted while the wire carries only ciphertext', T, async (t) => {
    const sdk = serverSdk(broker, broker.app, { encryptionMasterKeyBase64: masterKey });
    const name = uniq('private-encrypted-vault-');
    const client = await pusherClient(t, broker, { masterKey });
    const channel = await client.subscribe(name);
    const decrypted = client.nextEvent(channel, 'secret');

    // A raw subscriber, signed like a private channel, sees what the broker relays.
    const raw = rawClient(t, broker);
    const hello = await raw.established();
    const { auth } = sdk.authorizeChannel(JSON.parse(hello.data).socket_id, name);
    raw.send({ event: 'pusher:subscribe', data: { channel: name, auth } });
    await raw.event('pusher_internal:subscription_succeeded');

    const relayed = raw.event('secret');
    await sdk.trigger(name, 'secret', { pin: 4321 });
    const [data] = await decrypted;
    assert.deepEqual(data, { pin: 4321 });
    const envelope = JSON.parse((await relayed).data);
    assert.ok(envelope.nonce && envelope.ciphertext, JSON.stringify(envelope));
    assert.ok(!JSON.stringify(envelope).includes('4321'));
  });

  it('client events are refused on encrypted channels with 4305', T, async (t) => {
    const client = await pusherClient(t, broker, { masterKey });
    const name = uniq('private-encrypted-chat-');
    await client.subscribe(name);
    const error = client.errors.next((e) => e.data?.code === 4305, { what: '4305' });
    client.pusher.send_event('client-x', { a: 1 }, name);
    await error;
    assert.equal(client.state, 'connected');
  });
});

describe('subscription counting (opt-in per app)', () => {
  let broker;
  before(async () => {
    broker = await startBroker({ apps: [{ ...MAIN_APP, subscription_count_events: true }] });
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('pusher-js sees pusher:subscription_count change as subscribers come and go', T, async (t) => {
    const name = uniq('counted-');
    const first = await pusherClient(t, broker);
    const channel = await first.subscribe(name);
    const two = first.nextEvent(channel, 'pusher:subscription_count', { filter: (d) => d.subscription_count === 2 });
    const second = await pusherClient(t, broker);
    await second.subscribe(name);
    await two;
    assert.equal(channel.subscriptionCount, 2);
    const one = first.nextEvent(channel, 'pusher:subscription_count', { filter: (d) => d.subscription_count === 1 });
    second.pusher.unsubscribe(name);
    await one;
  });
});
