// Socket.IO clients on the same channels as Pusher clients: socket.io-client 4.8 and
// laravel-echo 2 with `broadcaster: 'socket.io'`, speaking laravel-echo-server's events
// (`subscribe`, `client event`, `presence:*`), authorized by a stand-in Laravel auth endpoint.

import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { MAIN_APP, startBroker } from '../lib/broker.mjs';
import { disconnectAll, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { connectError, connected, io, nextOn, sioClient, sioEcho, startAuthEndpoint, subscribe } from '../lib/socketio.mjs';
import { startCluster, startRedis } from '../lib/redis.mjs';
import { Recorder, TEST_TIMEOUT_MS, once, sleep, waitFor, withTimeout } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };
const JWT_SECRET = 'socketio-jwt-secret-of-32-bytes-at-least';

/** An HS256 token, as the chat deployment's identity provider issues it. */
function jwt(claims) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`;
  return `${input}.${createHmac('sha256', JWT_SECRET).update(input).digest('base64url')}`;
}

const nowSecs = () => Math.floor(Date.now() / 1000);
const ADMIN_TOKEN = 'socketio-admin-token';
/** Laravel's `database.redis.options.prefix` for an app named Laravel. */
const REDIS_PREFIX = 'laravel_database_';

/** Sends one Redis command (RESP) and resolves with the reply's first line. */
async function redisCommand(url, ...args) {
  const { connect } = await import('node:net');
  const { port } = new URL(url);
  const resp = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
  return new Promise((res, rej) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.write(resp));
    socket.once('data', (d) => {
      socket.destroy();
      res(d.toString().split('\r\n')[0]);
    });
    socket.once('error', rej);
  });
}

describe('Socket.IO (socket.io-client 4.8, laravel-echo 2)', () => {
  let broker;
  let sdk;
  let endpoint;
  let jwtApp;
  let redis;
  before(async () => {
    endpoint = await startAuthEndpoint();
    redis = await startRedis();
    jwtApp = {
      ...MAIN_APP,
      id: '200002',
      key: 'jwt-key',
      secret: 'jwt-secret',
      socketio: { path: '/chat/socket.io' },
      jwt: { required: true, algorithm: 'HS256', secret: JWT_SECRET, leeway_secs: 0 },
      policies: [{ name: 'tenant-isolation', channel: 'tenant.{tenant}.**', tenant: '{tenant}' }],
    };
    broker = await startBroker({
      apps: [
        {
          ...MAIN_APP,
          socketio: { auth_endpoint: endpoint.url },
          redis_broadcast: { url: redis.url, prefix: REDIS_PREFIX },
        },
        jwtApp,
        {
          ...MAIN_APP,
          id: '200003',
          key: 'recover-key',
          secret: 'recover-secret',
          socketio: { path: '/recover/socket.io', recovery_secs: 30 },
        },
        {
          ...MAIN_APP,
          id: '200004',
          key: 'limited-sio-key',
          secret: 'limited-sio-secret',
          socketio: { path: '/limited/socket.io' },
          rate_limits: { connections_per_minute_per_ip: 3 },
        },
      ],
      server: { admin_token: ADMIN_TOKEN },
    });
    sdk = serverSdk(broker);
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
    await endpoint?.close();
    await redis?.stop();
  });

  const transports = {
    'WebSocket only': ['websocket'],
    'long-polling only': ['polling'],
    'long-polling, then the upgrade': ['polling', 'websocket'],
  };
  for (const [name, list] of Object.entries(transports)) {
    it(`${name}: a published event reaches a socket.io-client subscriber as (channel, data)`, T, async (t) => {
      const socket = await sioClient(t, broker, { transports: list });
      assert.match(socket.id, /^\d+\.\d+$/, 'the Socket.IO id is the Pusher socket id');
      const channel = uniq('news-');
      await subscribe(socket, channel);
      for (let n = 0; n < 20; n++) {
        const got = nextOn(socket, 'App\\Events\\Shipped', channel);
        await sdk.trigger(channel, 'App\\Events\\Shipped', { order: n });
        assert.deepEqual(await got, { order: n });
      }
      const final = list.length === 2 ? 'websocket' : list[0];
      await waitFor(() => socket.io.engine.transport.name === final, { what: `the ${final} transport` });
    });
  }

  it('long-polling sessions from many connections on both shards each get their own events', { timeout: 30_000 }, async (t) => {
    const sockets = await Promise.all(Array.from({ length: 20 }, () => sioClient(t, broker, { transports: ['polling'] })));
    const channels = sockets.map(() => uniq('each-'));
    await Promise.all(sockets.map((s, i) => subscribe(s, channels[i])));
    const got = sockets.map((s, i) => nextOn(s, 'Mine', channels[i]));
    await Promise.all(channels.map((channel, i) => sdk.trigger(channel, 'Mine', { i })));
    assert.deepEqual(await Promise.all(got), channels.map((_, i) => ({ i })));
  });

  it('long-polling abuse: an unknown session, a second pending poll, a bad body', T, async (t) => {
    const base = `${broker.httpBase}/socket.io/?EIO=4&transport=polling`;
    const unknown = await fetch(`${base}&sid=0.nope`);
    assert.equal(unknown.status, 400);
    assert.deepEqual(await unknown.json(), { code: 1, message: 'Session ID unknown' });
    const post = await fetch(base, { method: 'POST', body: '40' });
    assert.deepEqual(await post.json(), { code: 2, message: 'Bad handshake method' });
    const open = await (await fetch(base)).text();
    const { sid, upgrades, pingInterval, pingTimeout } = JSON.parse(open.slice(1));
    assert.deepEqual(upgrades, ['websocket']);
    assert.deepEqual([pingInterval, pingTimeout], [25_000, 20_000]);
    const garbage = await fetch(`${base}&sid=${sid}`, { method: 'POST', body: '42["subscribe"' });
    assert.equal(garbage.status, 400, 'a packet that is not a CONNECT before one ends the session');
    const gone = await fetch(`${base}&sid=${sid}`);
    assert.equal((await gone.json()).code, 1);
    const socket = await sioClient(t, broker, { transports: ['polling'] });
    assert.ok(socket.connected, 'other sessions are unaffected');
  });

  it("long-polling handshakes count against the app's connection attempts per address", T, async () => {
    const base = `${broker.httpBase}/limited/socket.io/?EIO=4&transport=polling`;
    const statuses = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(base)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429]);
    const refused = await fetch(base);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    const ws = await fetch(`${broker.httpBase}/socket.io/?EIO=4&transport=polling`);
    assert.equal(ws.status, 200, 'another app is not limited');
  });

  it('laravel-echo listens on a public channel', T, async (t) => {
    const echo = await sioEcho(t, broker);
    const channel = uniq('orders-');
    const got = new Promise((res) => echo.channel(channel).listen('OrderShipped', res));
    await waitFor(async () => (await sdk.get({ path: `/channels/${channel}` }).then((r) => r.json())).occupied, {
      what: 'the channel to be occupied',
    });
    await sdk.trigger(channel, 'App\\Events\\OrderShipped', { id: 1 });
    assert.deepEqual(await withTimeout(got, 3_000, 'OrderShipped'), { id: 1 });
  });

  it('laravel-echo listens on a private channel the auth endpoint admits, with its headers', T, async (t) => {
    const echo = await sioEcho(t, broker, { bearer: 'alice' });
    const name = uniq('orders-');
    const got = new Promise((res) => echo.private(name).listen('.Updated', res));
    const call = await waitFor(() => endpoint.calls.find((c) => c.form.channel_name === `private-${name}`), {
      what: 'the auth endpoint call',
    });
    assert.equal(call.headers.authorization, 'Bearer alice');
    assert.equal(call.headers['x-requested-with'], 'XMLHttpRequest');
    assert.equal(call.form.socket_id, echo.socketId());
    await waitFor(async () => (await sdk.get({ path: `/channels/private-${name}` }).then((r) => r.json())).occupied, {
      what: 'the private channel to be occupied',
    });
    await sdk.trigger(`private-${name}`, 'Updated', { status: 'paid' });
    assert.deepEqual(await withTimeout(got, 3_000, '.Updated'), { status: 'paid' });
  });

  it('a subscription the auth endpoint refuses gets subscription_error with its status, and nothing after', T, async (t) => {
    const socket = await sioClient(t, broker);
    const channel = `private-${uniq('vault-')}`;
    const refused = nextOn(socket, 'subscription_error', channel);
    socket.emit('subscribe', { channel, auth: { headers: { Authorization: 'Bearer mallory' } } });
    const [status, why] = await refused;
    assert.equal(status, 403);
    assert.equal(why.type, 'AuthError');
    const events = new Recorder();
    socket.on('Secret', events.fn);
    await sdk.trigger(channel, 'Secret', { x: 1 });
    await sleep(300);
    assert.equal(events.calls.length, 0, 'a refused socket hears nothing');
  });

  it("laravel-echo hears a refusal on the channel as laravel-echo-server sends it (its .error() is a no-op)", T, async (t) => {
    const echo = await sioEcho(t, broker, { bearer: 'mallory' });
    const name = uniq('vault-');
    const errorCalled = [];
    const channel = echo.private(name).error((e) => errorCalled.push(e));
    const status = await withTimeout(new Promise((res) => channel.on('subscription_error', res)), 3_000, 'subscription_error');
    assert.equal(status, 403);
    assert.deepEqual(errorCalled, [], 'laravel-echo 2 never calls .error() on its socket.io channels');
  });

  it('presence: here() lists the members, joining() and leaving() follow, Pusher members included', T, async (t) => {
    const room = uniq('room-');
    const alice = await sioEcho(t, broker, { bearer: 'alice' });
    const here = new Promise((res) => alice.join(room).here(res));
    const joining = new Recorder();
    const leaving = new Recorder();
    alice.join(room).joining(joining.fn).leaving(leaving.fn);
    assert.deepEqual(await withTimeout(here, 3_000, 'here()'), [{ name: 'alice' }]);
    const bob = await sioEcho(t, broker, { bearer: 'bob' });
    const bobHere = new Promise((res) => bob.join(room).here(res));
    const members = await withTimeout(bobHere, 3_000, "bob's here()");
    assert.deepEqual(members.map((m) => m.name).sort(), ['alice', 'bob']);
    const [joined] = await joining.first(() => true, { what: 'joining()' });
    assert.deepEqual(joined, { name: 'bob' });
    const pusher = await pusherClient(t, broker, { user: { user_id: 'carol', user_info: { name: 'carol' } } });
    await pusher.subscribe(`presence-${room}`);
    const [carol] = await joining.first((m) => m.name === 'carol', { what: 'joining() for the Pusher member' });
    assert.deepEqual(carol, { name: 'carol' });
    const users = await sdk.get({ path: `/channels/presence-${room}/users` }).then((r) => r.json());
    assert.deepEqual(users.users.map((u) => u.id).sort(), ['alice', 'bob', 'carol']);
    bob.leave(room);
    const [left] = await leaving.first(() => true, { what: 'leaving()' });
    assert.deepEqual(left, { name: 'bob' });
  });

  it('a whisper reaches the other subscribers of a private channel, not the sender', T, async (t) => {
    const name = uniq('typing-');
    const alice = await sioEcho(t, broker, { bearer: 'alice' });
    const bob = await sioEcho(t, broker, { bearer: 'bob' });
    const aliceHeard = new Recorder();
    alice.private(name).listenForWhisper('typing', aliceHeard.fn);
    const heard = new Promise((res) => bob.private(name).listenForWhisper('typing', res));
    await waitFor(async () => (await sdk.get({ path: `/channels/private-${name}`, params: { info: 'subscription_count' } }).then((r) => r.json())).subscription_count === 2, {
      what: 'both subscribed',
    });
    alice.private(name).whisper('typing', { typing: true });
    assert.deepEqual(await withTimeout(heard, 3_000, 'the whisper'), { typing: true });
    await sleep(200);
    assert.equal(aliceHeard.calls.length, 0, 'the sender does not hear its own whisper');
  });

  it('toOthers: an event published with the socket id skips that socket only', T, async (t) => {
    const channel = uniq('feed-');
    const sender = await sioClient(t, broker);
    const other = await sioClient(t, broker);
    await subscribe(sender, channel);
    await subscribe(other, channel);
    const senderGot = new Recorder();
    sender.on('Posted', senderGot.fn);
    const got = nextOn(other, 'Posted', channel);
    await sdk.trigger(channel, 'Posted', { n: 1 }, { socket_id: sender.id });
    assert.deepEqual(await got, { n: 1 });
    await sleep(200);
    assert.equal(senderGot.calls.length, 0);
  });

  it('a Pusher and a Socket.IO subscriber get the same 1,000 events in the same order', { timeout: 30_000 }, async (t) => {
    const channel = uniq('mixed-');
    const socket = await sioClient(t, broker);
    await subscribe(socket, channel);
    const pusher = await pusherClient(t, broker);
    const pusherChannel = await pusher.subscribe(channel);
    const viaSocketIo = [];
    const viaPusher = [];
    socket.on('Tick', (name, data) => name === channel && viaSocketIo.push(data.n));
    pusherChannel.bind('Tick', (data) => viaPusher.push(data.n));
    const total = 1_000;
    for (let batch = 0; batch < total; batch += 10) {
      const events = Array.from({ length: 10 }, (_, i) => ({ channel, name: 'Tick', data: { n: batch + i } }));
      await sdk.triggerBatch(events);
    }
    await waitFor(() => viaSocketIo.length === total && viaPusher.length === total, {
      timeoutMs: 15_000,
      what: `${total} events on both wires`,
    });
    const expected = Array.from({ length: total }, (_, i) => i);
    assert.deepEqual(viaSocketIo, expected);
    assert.deepEqual(viaPusher, expected);
  });

  it('auth.token carries a raw JWT; an invalid one gets connect_error about authentication', T, async (t) => {
    const app = { path: '/chat/socket.io' };
    const good = await sioClient(t, broker, { ...app, auth: { token: jwt({ sub: 'u1', exp: nowSecs() + 60 }) } });
    assert.match(good.id, /^\d+\.\d+$/);
    for (const token of ['not-a-token', jwt({ sub: 'u2', exp: nowSecs() - 10 })]) {
      const bad = await sioClient(t, broker, { ...app, auth: { token }, waitConnected: false });
      const err = await connectError(bad);
      assert.match(err.message, /authentication/);
      assert.equal(err.data.code, 4009);
    }
    const none = await sioClient(t, broker, { ...app, waitConnected: false });
    assert.match((await connectError(none)).message, /authentication/);
  });

  it('ringcast:renew replaces the token without reconnecting; another subject is refused', T, async (t) => {
    const path = '/chat/socket.io';
    const socket = await sioClient(t, broker, { path, auth: { token: jwt({ sub: 'r1', exp: nowSecs() + 60 }) } });
    const expiresAt = nowSecs() + 3_600;
    const renewed = once(socket, 'ringcast:renewed');
    socket.emit('ringcast:renew', { token: jwt({ sub: 'r1', exp: expiresAt }) });
    assert.deepEqual(await renewed, { expires_at: expiresAt });
    const failed = once(socket, 'ringcast:renew_failed');
    socket.emit('ringcast:renew', { token: jwt({ sub: 'someone-else', exp: expiresAt }) });
    assert.equal((await failed).reason, 'the new token is for another user');
    assert.ok(socket.connected, 'the connection keeps its token');
  });

  it('a CONNECT to another namespace is refused with "Invalid namespace"', T, async (t) => {
    const socket = await sioClient(t, broker, { waitConnected: false });
    const admin = socket.io.socket('/admin');
    const err = await withTimeout(new Promise((res) => admin.once('connect_error', res)), 3_000, 'connect_error');
    assert.equal(err.message, 'Invalid namespace');
    admin.close();
  });

  it('malformed packets close only the connection that sent them', T, async (t) => {
    const bystander = await sioClient(t, broker);
    const channel = uniq('calm-');
    await subscribe(bystander, channel);
    for (const garbage of ['4x', '42[', '451-["a",{"_placeholder":true,"num":0}]', '9']) {
      const ws = new WebSocket(`${broker.wsBase}/socket.io/?EIO=4&transport=websocket`);
      t.after(() => ws.terminate());
      const opened = once(ws, 'message');
      await withTimeout(new Promise((res) => ws.once('open', res)), 3_000, 'open');
      const [open] = await opened;
      assert.match(String(open), /^0\{"maxPayload"/);
      const connected = once(ws, 'message');
      ws.send('40');
      const [reply] = await connected;
      assert.match(String(reply), /^40\{"sid":"\d+\.\d+"\}$/);
      ws.send(garbage);
      const [code] = await once(ws, 'close');
      assert.equal(code, 1002, `${garbage} closes with a protocol error`);
    }
    const got = nextOn(bystander, 'Still', channel);
    await sdk.trigger(channel, 'Still', { ok: true });
    assert.deepEqual(await got, { ok: true });
  });

  it('the Engine.IO handshake refuses other protocol versions and unknown sessions', T, async () => {
    const cases = [
      ['/socket.io/?EIO=3&transport=websocket', 5],
      ['/socket.io/?EIO=4&transport=flash', 0],
      ['/socket.io/?EIO=4&transport=websocket&sid=nope', 1],
    ];
    for (const [path, code] of cases) {
      const ws = new WebSocket(`${broker.wsBase}${path}`);
      const response = await withTimeout(
        new Promise((res) => ws.once('unexpected-response', (_, r) => res(r))),
        3_000,
        path,
      );
      let body = '';
      for await (const chunk of response) body += chunk;
      assert.equal(response.statusCode, 400, path);
      assert.equal(JSON.parse(body).code, code, path);
    }
  });

  it("a PUBLISH from Laravel's Redis broadcaster reaches Socket.IO and Pusher subscribers", T, async (t) => {
    const channel = uniq('shipments-');
    const socket = await sioClient(t, broker);
    await subscribe(socket, channel);
    const pusher = await pusherClient(t, broker);
    const pusherChannel = await pusher.subscribe(channel);
    const viaPusher = new Promise((res) => pusherChannel.bind('App\\Events\\Shipped', res));
    const viaSocketIo = nextOn(socket, 'App\\Events\\Shipped', channel);
    // What Laravel's RedisBroadcaster writes: PUBLISH <prefix><channel> {"event","data","socket"}.
    const payload = JSON.stringify({ event: 'App\\Events\\Shipped', data: { id: 7 }, socket: null });
    await waitFor(async () => (await redisCommand(redis.url, 'PUBLISH', `${REDIS_PREFIX}${channel}`, payload)) === ':1', {
      what: 'the broker subscribed to Redis',
    });
    assert.deepEqual(await viaSocketIo, { id: 7 });
    assert.deepEqual(await withTimeout(viaPusher, 3_000, 'the Pusher delivery'), { id: 7 });
  });

  it('a tenant policy refuses a Socket.IO subscriber as it refuses a Pusher one, and both are audited', T, async (t) => {
    const token = jwt({ sub: 'ann', tenant_id: 'acme', exp: nowSecs() + 60 });
    const socket = await sioClient(t, broker, { path: '/chat/socket.io', auth: { token } });
    const own = `tenant.acme.${uniq('orders-')}`;
    await subscribe(socket, own);
    const other = `tenant.globex.${uniq('orders-')}`;
    const refused = nextOn(socket, 'subscription_error', other);
    socket.emit('subscribe', { channel: other });
    const [status, why] = await refused;
    assert.equal(status, 403);
    assert.equal(why.type, 'AuthError');
    const query = new URLSearchParams({ app: jwtApp.id, decision: 'deny', channel: other });
    const page = await waitFor(
      async () => {
        const res = await fetch(`${broker.httpBase}/admin/api/audit?${query}`, {
          headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
        });
        const body = await res.json();
        return body.records?.length ? body : null;
      },
      { what: 'the audit record' },
    );
    const [record] = page.records;
    assert.equal(record.rule, 'tenant-isolation');
    assert.equal(record.tenant, 'acme');
    assert.equal(record.user, 'ann');
    assert.equal(record.socket, socket.id);
  });

  it('connection state recovery: a client whose transport drops gets what it missed, in order, once', { timeout: 30_000 }, async (t) => {
    const recoverApp = broker.appByKey('recover-key');
    const recoverSdk = serverSdk(broker, recoverApp);
    const socket = io(broker.httpBase, {
      path: '/recover/socket.io',
      transports: ['websocket'],
      forceNew: true,
      reconnectionDelay: 300,
      reconnectionDelayMax: 300,
    });
    t.after(() => socket.close());
    await connected(socket);
    assert.equal(socket.recovered, false);
    const channel = uniq('recover-');
    await subscribe(socket, channel);
    const got = [];
    socket.on('Tick', (name, data) => name === channel && got.push(data.n));
    let n = 0;
    // Several drops, so that reconnections land on either shard.
    for (let round = 0; round < 4; round++) {
      await recoverSdk.trigger(channel, 'Tick', { n: n++ });
      await waitFor(() => got.length === n, { what: `event ${n - 1}` });
      const dropped = once(socket, 'disconnect');
      socket.io.engine.close();
      await dropped;
      // Published while the client has no transport.
      for (let i = 0; i < 3; i++) await recoverSdk.trigger(channel, 'Tick', { n: n++ });
      await once(socket, 'connect', { timeoutMs: 5_000 });
      assert.equal(socket.recovered, true, `round ${round}: recovered`);
      await waitFor(() => got.length >= n, { what: `the missed events of round ${round}` });
    }
    await recoverSdk.trigger(channel, 'Tick', { n: n++ });
    await waitFor(() => got.length >= n, { what: 'the last event' });
    await sleep(200);
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i), 'every event once, in order');
    const stats = await recoverSdk.get({ path: `/channels/${channel}`, params: { info: 'subscription_count' } }).then((r) => r.json());
    assert.equal(stats.subscription_count, 1, 'one subscriber: the recovered connection');
  });

  it('oversized payloads: a WebSocket message over the limit closes with 1009, a long-polling packet ends its session, a body over the limit is 413', T, async (t) => {
    const bystander = await sioClient(t, broker);
    const channel = uniq('calm-');
    await subscribe(bystander, channel);
    const ws = new WebSocket(`${broker.wsBase}/socket.io/?EIO=4&transport=websocket`);
    t.after(() => ws.terminate());
    const opened = once(ws, 'message');
    await withTimeout(new Promise((res) => ws.once('open', res)), 3_000, 'open');
    await opened;
    const connectedReply = once(ws, 'message');
    ws.send('40');
    await connectedReply;
    const closed = once(ws, 'close');
    ws.send(`42["client event",{"channel":"private-x","event":"client-big","data":"${'x'.repeat(70_000)}"}]`);
    const [code] = await closed;
    assert.equal(code, 1009);

    const base = `${broker.httpBase}/socket.io/?EIO=4&transport=polling`;
    const { sid } = JSON.parse((await (await fetch(base)).text()).slice(1));
    assert.equal((await fetch(`${base}&sid=${sid}`, { method: 'POST', body: '40' })).status, 200);
    assert.match(await (await fetch(`${base}&sid=${sid}`)).text(), /^40\{"sid"/);
    const big = `42["hello","${'x'.repeat(70_000)}"]`;
    assert.equal((await fetch(`${base}&sid=${sid}`, { method: 'POST', body: big })).status, 200);
    const last = await (await fetch(`${base}&sid=${sid}`)).text();
    assert.equal(last.split('\u001e').at(-1), '1', "the session's last answer ends with Engine.IO's close");
    assert.equal((await fetch(`${base}&sid=${sid}`)).status, 400, 'and the session is gone');

    // Announced over the limit: refused before the body is read (a client still sending it
    // would see the connection close, so only the head is sent).
    const other = JSON.parse((await (await fetch(base)).text()).slice(1)).sid;
    const { connect } = await import('node:net');
    const head = await new Promise((res, rej) => {
      const socket = connect(broker.port, broker.host, () => {
        socket.write(
          `POST /socket.io/?EIO=4&transport=polling&sid=${other} HTTP/1.1\r\nHost: x\r\n` +
            'Content-Type: text/plain\r\nContent-Length: 1100000\r\n\r\n',
        );
      });
      let got = '';
      socket.on('data', (d) => (got += d));
      socket.on('close', () => res(got));
      socket.on('error', rej);
    });
    assert.match(head, /^HTTP\/1\.1 413 /);

    const got = nextOn(bystander, 'Still', channel);
    await sdk.trigger(channel, 'Still', { ok: true });
    assert.deepEqual(await got, { ok: true });
  });
});

describe('Socket.IO across a cluster (2 nodes, one Redis)', () => {
  let cluster;
  let nodes = [];
  before(async () => {
    cluster = await startCluster(['127.0.0.5', '127.0.0.6'], { apps: [{ ...MAIN_APP, socketio: {} }] });
    nodes = cluster.nodes;
  });
  after(async () => {
    disconnectAll();
    await cluster?.stop();
  });

  it('an event published through one node reaches Socket.IO and Pusher subscribers on both, once', T, async (t) => {
    const channel = uniq('cluster-sio-');
    const sockets = await Promise.all(nodes.map((node) => sioClient(t, node)));
    await Promise.all(sockets.map((s) => subscribe(s, channel)));
    const pusher = await pusherClient(t, nodes[0]);
    const pusherChannel = await pusher.subscribe(channel);
    const got = sockets.map(() => []);
    sockets.forEach((s, i) => s.on('Shipped', (name, data) => name === channel && got[i].push(data)));
    const viaPusher = [];
    pusherChannel.bind('Shipped', (data) => viaPusher.push(data));
    await serverSdk(nodes[1]).trigger(channel, 'Shipped', { id: 9 });
    await waitFor(() => got.every((g) => g.length === 1) && viaPusher.length === 1, { what: 'every subscriber' });
    await sleep(300);
    assert.deepEqual(got, [[{ id: 9 }], [{ id: 9 }]]);
    assert.deepEqual(viaPusher, [{ id: 9 }]);
  });

  it('a Socket.IO presence member on one node is seen by a Pusher member on the other', T, async (t) => {
    const room = `presence-${uniq('cluster-room-')}`;
    const data = JSON.stringify({ user_id: 'ann', user_info: { name: 'Ann' } });
    const pusher = await pusherClient(t, nodes[0], { user: { user_id: 'carol', user_info: { name: 'Carol' } } });
    const carol = await pusher.subscribe(room);
    const added = pusher.nextEvent(carol, 'pusher:member_added');
    const socket = await sioClient(t, nodes[1]);
    const auth = serverSdk(nodes[1]).authorizeChannel(socket.id, room, JSON.parse(data));
    const here = nextOn(socket, 'presence:subscribed', room);
    socket.emit('subscribe', { channel: room, auth: auth.auth, channel_data: auth.channel_data });
    const members = await here;
    assert.deepEqual(members.map((m) => m.user_id).sort(), ['ann', 'carol']);
    const [member] = await added;
    assert.deepEqual(member, { id: 'ann', info: { name: 'Ann' } });
    const leaving = nextOn(socket, 'presence:leaving', room);
    pusher.disconnect();
    assert.deepEqual(await leaving, { user_id: 'carol', user_info: { name: 'Carol' } });
  });
});
