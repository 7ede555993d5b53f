// Connection handshake, heartbeat and refusal close codes (PROTOCOL.md, "Connection").

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { DISABLED_APP, LIMITED_APP, ORIGIN_APP, startBroker } from '../lib/broker.mjs';
import { SOCKET_ID_RE, disconnectAll, pusherClient } from '../lib/clients.mjs';
import { dataOf, rawClient } from '../lib/raw.mjs';
import { TEST_TIMEOUT_MS } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

describe('connection', () => {
  let broker;
  before(async () => {
    broker = await startBroker();
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('pusher-js reaches the connected state with a socket id of the form digits.digits', T, async (t) => {
    const client = await pusherClient(t, broker);
    assert.equal(client.state, 'connected');
    assert.match(client.socketId, SOCKET_ID_RE);
  });

  it('pusher:connection_established carries its data as a JSON string with socket_id and a numeric activity_timeout', T, async (t) => {
    const ws = rawClient(t, broker);
    const frame = await ws.established();
    assert.equal(typeof frame.data, 'string', 'data must be a JSON-encoded string');
    const data = JSON.parse(frame.data);
    assert.match(data.socket_id, SOCKET_ID_RE);
    assert.equal(typeof data.activity_timeout, 'number');
    assert.ok(data.activity_timeout > 0 && data.activity_timeout <= 120, `activity_timeout ${data.activity_timeout}`);
  });

  it('two connections get different socket ids', T, async (t) => {
    const a = JSON.parse((await rawClient(t, broker).established()).data).socket_id;
    const b = JSON.parse((await rawClient(t, broker).established()).data).socket_id;
    assert.notEqual(a, b);
  });

  it('pusher:ping is answered with pusher:pong', T, async (t) => {
    const ws = rawClient(t, broker);
    await ws.established();
    const pong = ws.event('pusher:pong');
    ws.send({ event: 'pusher:ping', data: {} });
    await pong;
  });

  it('an unknown app key is closed with 4001', T, async (t) => {
    const ws = rawClient(t, broker, { key: 'no-such-key' });
    const end = await ws.closed();
    assert.equal(end.code, 4001, JSON.stringify(end));
  });

  it('a missing protocol query parameter is closed with 4008', T, async (t) => {
    const ws = rawClient(t, broker, { query: 'client=js&version=8.6.0&flash=false' });
    const end = await ws.closed();
    assert.equal(end.code, 4008, JSON.stringify(end));
  });

  it('protocols 4, 5 and 6 are served as 7 (pysher and Flutter send 6, the old Android SDK 5)', T, async (t) => {
    for (const version of [4, 5, 6]) {
      const ws = rawClient(t, broker, { query: `protocol=${version}&client=java&version=1.8.0` });
      const data = JSON.parse((await ws.established()).data);
      assert.match(data.socket_id, SOCKET_ID_RE, `protocol ${version}`);
      const pong = ws.event('pusher:pong');
      ws.send({ event: 'pusher:ping', data: {} });
      await pong;
    }
  });

  it('an unsupported protocol version (3, as Pusher: 4 to 7 are served) is closed with 4007', T, async (t) => {
    const ws = rawClient(t, broker, { query: 'protocol=3&client=js&version=8.6.0&flash=false' });
    const end = await ws.closed();
    assert.equal(end.code, 4007, JSON.stringify(end));
  });

  // PROTOCOL.md asks for close code 4005 on a wrong path. A broker may refuse the upgrade before
  // it becomes a WebSocket (plain HTTP 404), which clients observe as a failed handshake; both are
  // accepted here, anything else (an open socket, a different code) is not.
  it('a WebSocket on a wrong path is refused with 4005 or HTTP 404', T, async (t) => {
    const ws = rawClient(t, broker, { path: '/foo' });
    const end = await ws.closed();
    assert.ok(end.code === 4005 || end.httpStatus === 404, `expected 4005 or HTTP 404, got ${JSON.stringify(end)}`);
  });

  it('a disabled app is closed with 4003', T, async (t) => {
    const ws = rawClient(t, broker, { key: DISABLED_APP.key });
    const end = await ws.closed();
    assert.equal(end.code, 4003, JSON.stringify(end));
  });

  it('the connection over the app max_connections is closed with 4004 and the others stay open', T, async (t) => {
    const first = rawClient(t, broker, { key: LIMITED_APP.key });
    await first.established();
    const second = rawClient(t, broker, { key: LIMITED_APP.key });
    await second.established();
    const third = rawClient(t, broker, { key: LIMITED_APP.key });
    const end = await third.closed();
    assert.equal(end.code, 4004, JSON.stringify(end));
    assert.ok(first.isOpen && second.isOpen, 'the admitted connections stay open');
    const pong = first.event('pusher:pong');
    first.send({ event: 'pusher:ping', data: {} });
    await pong;
  });

  it('a slot freed under max_connections admits a new connection', T, async (t) => {
    const first = rawClient(t, broker, { key: LIMITED_APP.key });
    await first.established();
    const second = rawClient(t, broker, { key: LIMITED_APP.key });
    await second.established();
    first.ws.close(1000);
    await first.closed();
    // The broker learns of the close asynchronously; allow a few attempts.
    let lastEnd;
    for (let attempt = 0; attempt < 20; attempt++) {
      const next = rawClient(t, broker, { key: LIMITED_APP.key });
      const outcome = await next.admitted();
      if (outcome.established) return;
      lastEnd = outcome;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`no slot was freed: ${JSON.stringify(lastEnd)}`);
  });

  it('an origin outside allowed_origins is closed with 4009', T, async (t) => {
    const ws = rawClient(t, broker, { key: ORIGIN_APP.key, headers: { Origin: 'https://evil.example' } });
    const end = await ws.closed();
    assert.equal(end.code, 4009, JSON.stringify(end));
  });

  it('an origin inside allowed_origins is admitted', T, async (t) => {
    const ws = rawClient(t, broker, { key: ORIGIN_APP.key, headers: { Origin: 'https://allowed.example' } });
    await ws.established();
  });

  it('invalid JSON from the client yields pusher:error and the connection stays usable', T, async (t) => {
    const ws = rawClient(t, broker);
    await ws.established();
    const error = ws.event('pusher:error');
    ws.sendText('{this is not json');
    const frame = await error;
    const data = dataOf(frame);
    assert.equal(typeof data, 'object', `pusher:error data ${JSON.stringify(frame.data)}`);
    assert.equal(typeof data.message, 'string');
    assert.ok(ws.isOpen, 'connection stays open');
    const pong = ws.event('pusher:pong');
    ws.send({ event: 'pusher:ping', data: {} });
    await pong;
  });
});
