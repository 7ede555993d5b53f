// The signed HTTP API under /apps/{app_id}/, driven by the official `pusher` server SDK, plus the
// broker's own /up and /metrics endpoints (PROTOCOL.md, "HTTP API").

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker } from '../lib/broker.mjs';
import { WRONG_SECRET, disconnectAll, expectHttpError, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { EVENT_TIMEOUT_MS, TEST_TIMEOUT_MS, once, waitFor } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

/**
 * A query string signed by the SDK as if the clock read `now + skewSeconds`. The SDK reads
 * `Date.now()` synchronously inside `createSignedQueryString`, so shifting it for that one call
 * makes the SDK produce a correctly signed request with a stale or future `auth_timestamp`.
 */
function signedQueryAt(sdk, skewSeconds, { method, path, params, body }) {
  const realNow = Date.now;
  Date.now = () => realNow() + skewSeconds * 1000;
  try {
    return sdk.createSignedQueryString({ method, path, params, body: body === undefined ? undefined : JSON.stringify(body) });
  } finally {
    Date.now = realNow;
  }
}

async function fetchSigned(broker, sdk, skewSeconds, { method, path, params, body }) {
  const fullPath = `/apps/${broker.app.id}${path}`;
  const qs = signedQueryAt(sdk, skewSeconds, { method, path: fullPath, params, body });
  return fetch(`${broker.httpBase}${fullPath}?${qs}`, {
    method,
    headers: body === undefined ? {} : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(EVENT_TIMEOUT_MS),
  });
}

describe('HTTP API', () => {
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

  it('a correctly signed trigger returns 200 with a JSON object', T, async () => {
    const res = await sdk.trigger(uniq('nobody-'), 'evt', { a: 1 });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(typeof body, 'object');
    assert.ok(!Array.isArray(body) && body !== null);
  });

  it('a request signed with the wrong secret is 401 with a JSON error', T, async () => {
    const bad = serverSdk(broker, broker.app, { secret: WRONG_SECRET });
    const body = await expectHttpError(bad.get({ path: '/channels' }), 401);
    assert.equal(typeof body, 'object', `body ${JSON.stringify(body)}`);
    assert.equal(typeof body.error, 'string');
  });

  it('a trigger signed with the wrong secret is 401 and not delivered', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('guarded-');
    await client.subscribe(name);
    const bad = serverSdk(broker, broker.app, { secret: WRONG_SECRET });
    await expectHttpError(bad.trigger(name, 'forged', {}), 401);
    const marker = client.nextMessage((m) => m.event === 'marker');
    await sdk.trigger(name, 'marker', {});
    await marker;
    assert.equal(client.received((m) => m.event === 'forged').length, 0);
  });

  it('a request whose auth_timestamp is 700 seconds old is 401', T, async () => {
    const res = await fetchSigned(broker, sdk, -700, { method: 'GET', path: '/channels' });
    assert.equal(res.status, 401, await res.text());
  });

  it('a request whose auth_timestamp is 700 seconds ahead is 401', T, async () => {
    const res = await fetchSigned(broker, sdk, 700, { method: 'GET', path: '/channels' });
    assert.equal(res.status, 401, await res.text());
  });

  it('a request whose auth_timestamp is 300 seconds old is accepted', T, async () => {
    const res = await fetchSigned(broker, sdk, -300, { method: 'GET', path: '/channels' });
    assert.equal(res.status, 200, await res.text());
  });

  it('a body that does not match body_md5 is 401', T, async () => {
    const fullPath = `/apps/${broker.app.id}/events`;
    const signedBody = { name: 'evt', channels: [uniq('md5-')], data: '{}' };
    const qs = sdk.createSignedQueryString({ method: 'POST', path: fullPath, body: JSON.stringify(signedBody) });
    const res = await fetch(`${broker.httpBase}${fullPath}?${qs}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ ...signedBody, data: '{"tampered":true}' }),
      signal: AbortSignal.timeout(EVENT_TIMEOUT_MS),
    });
    assert.equal(res.status, 401, await res.text());
  });

  it('event data of exactly 10240 bytes is accepted', T, async () => {
    const res = await sdk.trigger(uniq('big-'), 'evt', 'x'.repeat(10240));
    assert.equal(res.status, 200);
  });

  it('event data over 10 KB is 413', T, async () => {
    await expectHttpError(sdk.trigger(uniq('big-'), 'evt', 'x'.repeat(10241)), 413);
  });

  it('a trigger to 100 channels is accepted', T, async () => {
    const channels = Array.from({ length: 100 }, (_, i) => uniq(`c${i}-`));
    const res = await sdk.trigger(channels, 'evt', {});
    assert.equal(res.status, 200);
  });

  it('a trigger to more than 100 channels is 400', T, async () => {
    // The SDK refuses 101 channels itself, so the body is posted through its signed `post`.
    const channels = Array.from({ length: 101 }, (_, i) => uniq(`c${i}-`));
    await expectHttpError(sdk.post({ path: '/events', body: { name: 'evt', data: '{}', channels } }), 400);
  });

  it('a trigger with info=subscription_count reports the count per channel', T, async (t) => {
    const a = await pusherClient(t, broker);
    const b = await pusherClient(t, broker);
    const name = uniq('counted-');
    await a.subscribe(name);
    await b.subscribe(name);
    const res = await sdk.trigger(name, 'evt', {}, { info: 'subscription_count' });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.deepEqual(body.channels?.[name], { subscription_count: 2 });
  });

  it('batch_events with 2 events delivers both', T, async (t) => {
    const client = await pusherClient(t, broker);
    const one = uniq('batch-a-');
    const two = uniq('batch-b-');
    const c1 = await client.subscribe(one);
    const c2 = await client.subscribe(two);
    const got1 = client.nextEvent(c1, 'first');
    const got2 = client.nextEvent(c2, 'second');
    const res = await sdk.triggerBatch([
      { channel: one, name: 'first', data: { n: 1 } },
      { channel: two, name: 'second', data: { n: 2 } },
    ]);
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.equal(typeof body, 'object');
    assert.deepEqual((await got1)[0], { n: 1 });
    assert.deepEqual((await got2)[0], { n: 2 });
  });

  it('batch_events with socket_id excludes that socket', T, async (t) => {
    const excluded = await pusherClient(t, broker);
    const name = uniq('batch-x-');
    const channel = await excluded.subscribe(name);
    const marker = excluded.nextEvent(channel, 'marker');
    await sdk.triggerBatch([
      { channel: name, name: 'skipped', data: {}, socket_id: excluded.socketId },
      { channel: name, name: 'marker', data: {} },
    ]);
    await marker;
    assert.equal(excluded.received((m) => m.event === 'skipped').length, 0);
  });

  it('batch_events with info reports counts per event, in order', T, async (t) => {
    const subscriber = await pusherClient(t, broker);
    const counted = uniq('batch-info-');
    const member = newUser('batch-member');
    const present = await pusherClient(t, broker, { user: member });
    const presence = uniq('presence-batch-');
    await subscriber.subscribe(counted);
    await present.subscribe(presence);
    const res = await sdk.triggerBatch([
      { channel: counted, name: 'a', data: '1', info: 'subscription_count' },
      { channel: uniq('nobody-'), name: 'b', data: '2' },
      { channel: presence, name: 'c', data: '3', info: 'user_count,subscription_count' },
    ]);
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), {
      batch: [{ subscription_count: 1 }, {}, { subscription_count: 1, user_count: 1 }],
    });
  });

  it('batch_events with more than 10 events is 400', T, async () => {
    const batch = Array.from({ length: 11 }, (_, i) => ({ channel: uniq('b-'), name: `e${i}`, data: {} }));
    await expectHttpError(sdk.triggerBatch(batch), 400);
  });

  it('GET /channels lists occupied channels', T, async (t) => {
    const client = await pusherClient(t, broker);
    const name = uniq('listed-');
    await client.subscribe(name);
    const res = await sdk.get({ path: '/channels' });
    assert.equal(res.status, 200);
    const body = await res.json();
    assert.ok(body.channels && name in body.channels, JSON.stringify(body));
  });

  it('the server SDK can sign a user in, send to that user and terminate their connections', T, async (t) => {
    const user = newUser('signed');
    const client = await pusherClient(t, broker, { user });
    const success = client.nextMessage((m) => m.event === 'pusher:signin_success', { what: 'pusher:signin_success' });
    client.pusher.signin();
    const frame = await success;
    assert.equal(JSON.parse(frame.data.user_data).id, user.user_id);
    await client.pusher.user.signinDonePromise;
    const s2u = client.pusher.user.serverToUserChannel;
    await waitFor(() => s2u?.subscribed, { what: '#server-to-user subscription' });

    const got = once(client.pusher.user, 'notice');
    await sdk.sendToUser(user.user_id, 'notice', { hello: user.user_id });
    assert.deepEqual(await got, { hello: user.user_id });

    const res = await sdk.terminateUserConnections(user.user_id);
    assert.equal(res.status, 200);
    await client.states.first((s) => s.previous === 'connected' && s.current !== 'connected', {
      what: 'the connection to be terminated',
    });
  });

  it('GET /up is 200', T, async () => {
    const res = await fetch(`${broker.httpBase}/up`, { signal: AbortSignal.timeout(EVENT_TIMEOUT_MS) });
    assert.equal(res.status, 200);
    await res.text();
  });

  it('GET /metrics is Prometheus text containing ringcast_connections', T, async (t) => {
    await pusherClient(t, broker);
    const res = await fetch(`${broker.httpBase}/metrics`, { signal: AbortSignal.timeout(EVENT_TIMEOUT_MS) });
    assert.equal(res.status, 200);
    const text = await res.text();
    assert.match(text, /ringcast_connections/);
  });
});
