// The per-user inbox (`[apps.inbox]`) with unmodified clients: notifications published through
// the Pusher HTTP API while a user is offline are found in `GET /pending-notifications`, acked
// with `POST /pending-notifications/ack`; the legacy `POST /broadcast-message` reaches a
// pusher-js subscriber and the inbox; the caller is a JWT user or one the app's backend verified.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { disconnectAll, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { TEST_TIMEOUT_MS } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };
const JWT_SECRET = 'conformance-jwt-secret-of-32-bytes-at-least';

/** An HS256 token for `sub`, valid for a minute. */
function jwt(sub) {
  const b64url = (data) => Buffer.from(data).toString('base64url');
  const claims = { sub, exp: Math.floor(Date.now() / 1000) + 60 };
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
}

/** `fetch` against the broker; resolves with the status, headers and parsed JSON body. */
async function call(broker, path, { method = 'GET', headers = {}, body } = {}) {
  const res = await fetch(`http://${broker.host}:${broker.port}${path}`, {
    method,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, headers: res.headers, json: text ? JSON.parse(text) : null };
}

function pending(broker, credentials, query = '') {
  return call(broker, `/pending-notifications?app_key=${broker.app.key}${query}`, { headers: credentials });
}

function ack(broker, credentials, ids) {
  return call(broker, `/pending-notifications/ack?app_key=${broker.app.key}`, {
    method: 'POST',
    headers: credentials,
    body: { ids },
  });
}

const bearer = (sub) => ({ authorization: `Bearer ${jwt(sub)}` });

describe('inbox with JWT users (pusher-js, Pusher HTTP API)', () => {
  let broker;
  before(async () => {
    broker = await startBroker({
      apps: [
        {
          ...MAIN_APP,
          allowed_origins: ['https://app.example'],
          jwt: { algorithm: 'HS256', secret: JWT_SECRET, leeway_secs: 0 },
          inbox: { channels: ['user.{id}', 'worker.{id}'] },
          legacy_broadcast: {},
        },
      ],
    });
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('an offline user finds their three notifications oldest first, acks two and sees one', T, async () => {
    const [me, other] = [uniq('me-'), uniq('other-')];
    const sdk = serverSdk(broker);
    for (const n of [1, 2, 3]) {
      await sdk.trigger(`private-user.${me}`, 'notification', { n });
    }
    await sdk.trigger(`private-user.${other}`, 'notification', { n: 'not yours' });
    const read = await pending(broker, bearer(me));
    assert.equal(read.status, 200, JSON.stringify(read.json));
    assert.equal(read.json.unread, 3);
    assert.deepEqual(
      read.json.notifications.map((n) => [n.channel, n.event, JSON.parse(n.data).n]),
      [1, 2, 3].map((n) => [`private-user.${me}`, 'notification', n]),
    );
    const ids = read.json.notifications.map((n) => n.id);
    assert.ok(ids[0] < ids[1] && ids[1] < ids[2], `ids rise: ${ids}`);
    assert.ok(read.json.notifications.every((n) => n.created_at_ms > 0));

    const theirs = (await pending(broker, bearer(other))).json.notifications[0].id;
    const acked = await ack(broker, bearer(me), [ids[0], ids[1], theirs]);
    assert.equal(acked.status, 200);
    assert.deepEqual(acked.json, { acked: 2 });
    const after = await pending(broker, bearer(me));
    assert.equal(after.json.unread, 1);
    assert.deepEqual(after.json.notifications.map((n) => n.id), [ids[2]]);
    assert.equal((await pending(broker, bearer(other))).json.unread, 1);
  });

  it('the 51st notification evicts the oldest', T, async () => {
    const me = uniq('many-');
    const sdk = serverSdk(broker);
    for (let first = 0; first < 51; first += 10) {
      const batch = [];
      for (let n = first; n < Math.min(first + 10, 51); n += 1) {
        batch.push({ channel: `private-user.${me}`, name: `e${n}`, data: '{}' });
      }
      await sdk.triggerBatch(batch);
    }
    const read = await pending(broker, bearer(me), '&limit=100');
    assert.equal(read.json.unread, 50);
    assert.equal(read.json.notifications.length, 50);
    assert.equal(read.json.notifications[0].event, 'e1');
    assert.equal(read.json.notifications[49].event, 'e50');
    const limited = await pending(broker, bearer(me), '&limit=2');
    assert.deepEqual(limited.json.notifications.map((n) => n.event), ['e1', 'e2']);
    assert.equal(limited.json.unread, 50);
  });

  it('POST /broadcast-message with userIds reaches a pusher-js subscriber and the inbox', T, async (t) => {
    const me = uniq('legacy-');
    const client = await pusherClient(t, broker);
    const channel = await client.subscribe(`private-user.${me}`);
    const received = client.nextEvent(channel, 'notification');
    const sent = await call(broker, '/broadcast-message', {
      method: 'POST',
      headers: { 'x-reverb-app-id': broker.app.id, 'x-reverb-app-secret': broker.app.secret },
      body: { channel: 'notifications', event: 'notification', data: { title: 'hi' }, userIds: [me] },
    });
    assert.equal(sent.status, 200, JSON.stringify(sent.json));
    const [data] = await received;
    assert.deepEqual(data, { title: 'hi' });
    const read = await pending(broker, bearer(me));
    assert.deepEqual(
      read.json.notifications.map((n) => [n.channel, n.event, n.data]),
      [[`private-user.${me}`, 'notification', '{"title":"hi"}']],
    );
  });

  it('POST /broadcast-message refuses a wrong or missing secret with 401 and publishes nothing', T, async () => {
    const me = uniq('refused-');
    const body = { event: 'notification', data: 'x', userIds: [me] };
    for (const headers of [
      { 'x-reverb-app-id': broker.app.id, 'x-reverb-app-secret': 'not-the-secret' },
      { 'x-reverb-app-id': broker.app.id },
    ]) {
      const refused = await call(broker, '/broadcast-message', { method: 'POST', headers, body });
      assert.equal(refused.status, 401);
      assert.match(refused.json.error, /X-Reverb-App-Secret/);
    }
    const read = await pending(broker, bearer(me));
    assert.equal(read.status, 200);
    assert.equal(read.json.unread, 0);
  });

  it('a caller without valid credentials gets 401, an unknown app_key 404, a bad ack body 400', T, async () => {
    const none = await pending(broker, {});
    assert.equal(none.status, 401);
    assert.match(none.json.error, /credentials are required/);
    const forged = await pending(broker, { authorization: `Bearer ${jwt('x').slice(0, -4)}AAAA` });
    assert.equal(forged.status, 401);
    const unknown = await call(broker, '/pending-notifications?app_key=nope', { headers: bearer('x') });
    assert.equal(unknown.status, 404);
    assert.match(unknown.json.error, /unknown app_key/);
    const bad = await call(broker, `/pending-notifications/ack?app_key=${broker.app.key}`, {
      method: 'POST',
      headers: bearer('x'),
      body: { ids: 'all' },
    });
    assert.equal(bad.status, 400);
    assert.match(bad.json.error, /ids/);
  });

  it('browsers on the app origin get CORS answers; another origin is refused', T, async () => {
    const preflight = await call(broker, `/pending-notifications/ack?app_key=${broker.app.key}`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization, content-type',
      },
    });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://app.example');
    assert.match(preflight.headers.get('access-control-allow-headers'), /Authorization/);
    assert.match(preflight.headers.get('access-control-allow-methods'), /POST/);
    const read = await pending(broker, { ...bearer('cors'), origin: 'https://app.example' });
    assert.equal(read.status, 200);
    assert.equal(read.headers.get('access-control-allow-origin'), 'https://app.example');
    const elsewhere = await pending(broker, { ...bearer('cors'), origin: 'https://evil.example' });
    assert.equal(elsewhere.status, 403);
    assert.equal(elsewhere.headers.get('access-control-allow-origin'), null);
  });
});

describe('inbox with backend-verified credentials (access-token, session-id, x-actor-type)', () => {
  let broker;
  let backend;
  let calls = 0;
  before(async () => {
    // The app's backend: `good-*` tokens name the user after the prefix, with the actor asked for.
    backend = createServer((req, res) => {
      calls += 1;
      const token = req.headers['access-token'] ?? '';
      const actor = req.headers['x-actor-type'] ?? 'user';
      if (!token.startsWith('good-') || !req.headers['session-id']) {
        res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"bad token"}');
        return;
      }
      const answer = { user_id: token.slice(5), name: 'n', email: 'e@example.com', type: actor };
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
    });
    await new Promise((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${backend.address().port}/api/verify-token`;
    broker = await startBroker({
      apps: [
        {
          ...MAIN_APP,
          token_verification: { url },
          inbox: { channels: ['user.{id}', 'worker.{id}'] },
        },
      ],
    });
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
    await new Promise((resolve) => backend?.close(resolve));
  });

  it('a worker verified by the backend reads only their notifications; a refused token is 401', T, async () => {
    const worker = uniq('w');
    const sdk = serverSdk(broker);
    await sdk.trigger(`private-worker.${worker}`, 'job.assigned', { job: 1 });
    await sdk.trigger(`private-user.${uniq('u')}`, 'job.assigned', { job: 2 });
    const credentials = { 'access-token': `good-${worker}`, 'session-id': 's1', 'x-actor-type': 'worker' };
    const read = await pending(broker, credentials);
    assert.equal(read.status, 200, JSON.stringify(read.json));
    assert.deepEqual(
      read.json.notifications.map((n) => [n.channel, JSON.parse(n.data).job]),
      [[`private-worker.${worker}`, 1]],
    );
    // As the reference deployment's clients call it, naming no app: the one app with an inbox.
    const unnamed = await call(broker, '/pending-notifications', { headers: credentials });
    assert.equal(unnamed.status, 200, JSON.stringify(unnamed.json));
    assert.deepEqual(unnamed.json, read.json);
    const before = calls;
    const acked = await ack(broker, credentials, [read.json.notifications[0].id]);
    assert.deepEqual(acked.json, { acked: 1 });
    assert.equal(calls, before, 'the second request is answered from the verification cache');
    const refused = await pending(broker, { 'access-token': 'bad', 'session-id': 's1' });
    assert.equal(refused.status, 401);
    assert.match(refused.json.error, /bad token|backend|refused/i);
  });
});
