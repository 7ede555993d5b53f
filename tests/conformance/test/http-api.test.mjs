import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, APP } from '../lib/broker.mjs';
import { pusherClient, serverSdk, subscribed, nextEvent, disconnectAll } from '../lib/clients.mjs';

describe('HTTP API', () => {
  let broker;
  let sdk;
  let base;
  before(async () => {
    broker = await startBroker();
    sdk = serverSdk(broker);
    base = `http://${broker.host}:${broker.port}`;
  });
  after(() => broker.stop());

  it('a wrong secret gets 401 with a JSON error', async () => {
    const wrong = serverSdk(broker, { ...APP, secret: 'wrong' });
    const error = await wrong.trigger('c', 'e', 'x').catch((e) => e);
    assert.equal(error.status, 401);
    assert.ok(JSON.parse(error.body).error);
  });

  it('a stale auth_timestamp gets 401', async () => {
    const realNow = Date.now;
    Date.now = () => realNow() - 700_000;
    let error;
    try {
      error = await sdk.trigger('c', 'e', 'x').catch((e) => e);
    } finally {
      Date.now = realNow;
    }
    assert.equal(error.status, 401);
    assert.match(JSON.parse(error.body).error, /auth_timestamp/);
  });

  it('event data over 10 KB gets 413', async () => {
    const error = await sdk.trigger('c', 'e', 'x'.repeat(10 * 1024 + 1)).catch((e) => e);
    assert.equal(error.status, 413);
  });

  it('more than 100 channels gets 400', async () => {
    const channels = Array.from({ length: 101 }, (_, i) => `c${i}`);
    const body = JSON.stringify({ name: 'e', data: 'x', channels });
    const response = await sdk.post({ path: '/events', body: JSON.parse(body) }).catch((e) => e);
    assert.equal(response.status, 400);
  });

  it('batch_events delivers every event', async () => {
    const client = pusherClient(broker);
    const { channel } = await subscribed(client, 'batched');
    const first = nextEvent(channel, 'one');
    const second = nextEvent(channel, 'two');
    const response = await sdk.triggerBatch([
      { channel: 'batched', name: 'one', data: '1' },
      { channel: 'batched', name: 'two', data: '2' },
    ]);
    assert.equal(response.status, 200);
    assert.equal((await first).data, 1);
    assert.equal((await second).data, 2);
    disconnectAll(client);
  });

  it('trigger with info returns subscription counts', async () => {
    const client = pusherClient(broker);
    await subscribed(client, 'info-channel');
    const response = await sdk.trigger('info-channel', 'e', 'x', { info: 'subscription_count' });
    assert.deepEqual(await response.json(), { channels: { 'info-channel': { subscription_count: 1 } } });
    disconnectAll(client);
  });

  it('GET /up is healthy and /metrics is Prometheus text', async () => {
    const up = await fetch(`${base}/up`);
    assert.equal(up.status, 200);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^ringcast_connections \d+$/m);
  });

  it('unknown paths get a JSON 404', async () => {
    const response = await fetch(`${base}/nothing-here`);
    assert.equal(response.status, 404);
    assert.ok((await response.json()).error);
  });
});
