// JWT connection authentication with unmodified pusher-js: the token rides in `wsPath`
// (`/token/{jwt}`), expiry closes the live socket with 4010, revocation with 4009.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Pusher from 'pusher-js';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { PusherClient, disconnectAll, newUser, pusherOptions, serverSdk } from '../lib/clients.mjs';
import { startCluster } from '../lib/redis.mjs';
import { TEST_TIMEOUT_MS, waitFor } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };
const JWT_SECRET = 'conformance-jwt-secret-of-32-bytes-at-least';

function b64url(data) {
  return Buffer.from(data).toString('base64url');
}

/** An HS256 token, as an identity provider would issue it. */
function jwt(claims) {
  const input = `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify(claims))}`;
  return `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
}

function client(t, broker, token) {
  const options = { ...pusherOptions(broker, { app: broker.app, user: newUser('jwt') }), wsPath: token ? `/token/${token}` : '' };
  const c = new PusherClient(new Pusher(broker.app.key, options), null);
  t.after(() => c.disconnect());
  return c;
}

describe('JWT connections (pusher-js)', () => {
  let broker;
  before(async () => {
    broker = await startBroker({
      apps: [{ ...MAIN_APP, jwt: { required: true, algorithm: 'HS256', secret: JWT_SECRET, leeway_secs: 0 } }],
    });
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  const now = () => Math.floor(Date.now() / 1000);

  it('a valid token connects; none is refused with 4009', T, async (t) => {
    await client(t, broker, jwt({ sub: 'u1', exp: now() + 60 })).connected();
    const anonymous = client(t, broker, null);
    // Refused during the handshake, pusher-js wraps the error: {type: 'WebSocketError', error: {...}}.
    const codeOf = (e) => (e.data ?? e.error?.data)?.code;
    const [error] = await anonymous.errors.next((e) => codeOf(e) === 4009, { what: '4009' });
    assert.match((error.data ?? error.error.data).message, /token is required/);
  });

  it('renewing before expiry with pusher.send_event keeps the socket open past the first exp', T, async (t) => {
    const c = client(t, broker, jwt({ sub: 'u3', exp: now() + 2 }));
    await c.connected();
    const expiresAt = now() + 60;
    const renewed = c.nextMessage((m) => m.event === 'ringcast:renewed', { what: 'ringcast:renewed' });
    const bound = new Promise((resolve) => c.pusher.bind('ringcast:renewed', resolve));
    c.pusher.send_event('ringcast:renew', { token: jwt({ sub: 'u3', exp: expiresAt }) });
    await renewed;
    assert.equal((await bound).expires_at, expiresAt);
    // Past the first token's expiry (and a broker tick) the socket is still open.
    await new Promise((resolve) => setTimeout(resolve, 3500));
    await c.barrier();
    assert.equal(c.state, 'connected');
    assert.equal(c.errors.calls.length, 0);
    const failed = new Promise((resolve) => c.pusher.bind('ringcast:renew_failed', resolve));
    c.pusher.send_event('ringcast:renew', { token: jwt({ sub: 'someone-else', exp: expiresAt }) });
    assert.match((await failed).reason, /another user/);
  });

  it('a live socket is closed with 4010 when its token expires', T, async (t) => {
    const c = client(t, broker, jwt({ sub: 'u2', exp: now() + 2 }));
    await c.connected();
    await c.errors.next((e) => e.data?.code === 4010, { what: '4010', timeoutMs: 6000 });
  });

  it('revoking a token by jti closes its live socket with 4009', T, async (t) => {
    const c = client(t, broker, jwt({ sub: 'u3', jti: 'revoke-me', exp: now() + 60 }));
    await c.connected();
    const closed = c.errors.next((e) => e.data?.code === 4009, { what: 'revocation' });
    const res = await serverSdk(broker).post({ path: '/tokens/revoke', body: { jti: 'revoke-me' } });
    assert.equal(res.status, 200);
    const [error] = await closed;
    assert.equal(error.data.message, 'token revoked');
  });

  it('revoking a user by sub closes every socket of theirs and refuses a new token', T, async (t) => {
    const first = client(t, broker, jwt({ sub: 'u4', jti: 'u4-a', exp: now() + 60 }));
    const second = client(t, broker, jwt({ sub: 'u4', jti: 'u4-b', exp: now() + 60 }));
    const other = client(t, broker, jwt({ sub: 'u5', jti: 'u5-a', exp: now() + 60 }));
    await Promise.all([first.connected(), second.connected(), other.connected()]);
    const closed = [first, second].map((c) =>
      c.errors.next((e) => e.data?.code === 4009, { what: 'user revocation' }),
    );
    const res = await serverSdk(broker).post({
      path: '/tokens/revoke',
      body: { sub: 'u4', until: now() + 120 },
    });
    assert.equal(res.status, 200);
    for (const [error] of await Promise.all(closed)) {
      assert.equal(error.data.message, 'token revoked');
    }
    const again = client(t, broker, jwt({ sub: 'u4', jti: 'u4-c', exp: now() + 60 }));
    // Refused during the handshake, pusher-js wraps the error as in the first test.
    const codeOf = (e) => (e.data ?? e.error?.data)?.code;
    const [refused] = await again.errors.next((e) => codeOf(e) === 4009, { what: 'refusal' });
    assert.match((refused.data ?? refused.error.data).message, /revoked/);
    assert.equal(other.pusher.connection.state, 'connected');
  });
});

describe('JWT revocation by user across nodes and restarts (pusher-js)', () => {
  const jwtApp = { ...MAIN_APP, jwt: { required: true, algorithm: 'HS256', secret: JWT_SECRET, leeway_secs: 0 } };
  const now = () => Math.floor(Date.now() / 1000);
  const revokeUser = (broker, sub) =>
    serverSdk(broker).post({ path: '/tokens/revoke', body: { sub, until: now() + 300 } });
  // Refused during the handshake, pusher-js wraps the error: {type: 'WebSocketError', error: {...}}.
  const refusal = (e) => e.data ?? e.error?.data;
  let cluster;
  let nodes = [];
  before(async () => {
    cluster = await startCluster(['127.0.0.2', '127.0.0.3'], { apps: [jwtApp] });
    nodes = cluster.nodes;
  });
  after(async () => {
    disconnectAll();
    await cluster?.stop();
  });

  it('revoking a user through one node closes every socket of theirs on every node', T, async (t) => {
    const sockets = nodes.map((node, i) => client(t, node, jwt({ sub: 'n1', jti: `n1-${i}`, exp: now() + 60 })));
    const bystander = client(t, nodes[1], jwt({ sub: 'n2', jti: 'n2-0', exp: now() + 60 }));
    await Promise.all([...sockets, bystander].map((c) => c.connected()));
    const closed = sockets.map((c) => c.errors.next((e) => e.data?.code === 4009, { what: 'revocation' }));
    assert.equal((await revokeUser(nodes[0], 'n1')).status, 200);
    for (const [error] of await Promise.all(closed)) {
      assert.equal(error.data.message, 'token revoked');
    }
    // The other node refuses the user's new tokens too; the bystander stays.
    const again = client(t, nodes[1], jwt({ sub: 'n1', jti: 'n1-new', exp: now() + 60 }));
    const [refused] = await again.errors.next((e) => refusal(e)?.code === 4009, { what: 'refusal' });
    assert.match(refusal(refused).message, /revoked/);
    assert.equal(bystander.pusher.connection.state, 'connected');
  });

  it('a user revocation survives a restart of a single node', T, async (t) => {
    const dataDir = join(await mkdtemp(join(tmpdir(), 'ringcast-revoked-')), 'data');
    let broker = await startBroker({ apps: [jwtApp], server: { data_dir: dataDir } });
    try {
      assert.equal((await revokeUser(broker, 'r1')).status, 200);
      await broker.stop();
      broker = await startBroker({ apps: [jwtApp], server: { data_dir: dataDir } });
      const revoked = client(t, broker, jwt({ sub: 'r1', jti: 'r1-a', exp: now() + 60 }));
      const [refused] = await revoked.errors.next((e) => refusal(e)?.code === 4009, { what: 'refusal' });
      assert.match(refusal(refused).message, /revoked/);
      await client(t, broker, jwt({ sub: 'r2', jti: 'r2-a', exp: now() + 60 })).connected();
    } finally {
      await broker.stop();
    }
  });
});
