import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker, APP } from '../lib/broker.mjs';
import { pusherClient, connected, rawSocket, disconnectAll } from '../lib/clients.mjs';

describe('connection', () => {
  let broker;
  before(async () => {
    broker = await startBroker({
      apps: [
        APP,
        { id: '2', key: 'disabled-key', secret: 's2', enabled: false },
        { id: '3', key: 'small-key', secret: 's3', max_connections: 1 },
      ],
    });
  });
  after(() => broker.stop());

  it('pusher-js connects and gets a socket id of the form digits.digits', async () => {
    const client = pusherClient(broker);
    const socketId = await connected(client);
    assert.match(socketId, /^\d+\.\d+$/);
    disconnectAll(client);
  });

  it('connection_established carries data as a JSON string with activity_timeout', async () => {
    const raw = await rawSocket(broker, `/app/${APP.key}?protocol=7&client=js&version=8.4.0&flash=false`);
    const hello = await raw.next();
    assert.equal(hello.event, 'pusher:connection_established');
    assert.equal(typeof hello.data, 'string');
    const data = JSON.parse(hello.data);
    assert.match(data.socket_id, /^\d+\.\d+$/);
    assert.equal(typeof data.activity_timeout, 'number');
    raw.close();
  });

  it('pusher:ping is answered with pusher:pong', async () => {
    const raw = await rawSocket(broker, `/app/${APP.key}?protocol=7`);
    await raw.next((m) => m.event === 'pusher:connection_established');
    raw.send({ event: 'pusher:ping', data: {} });
    assert.equal((await raw.next()).event, 'pusher:pong');
    raw.close();
  });

  for (const [name, path, code] of [
    ['an unknown app key closes with 4001', '/app/nope?protocol=7', 4001],
    ['a disabled app closes with 4003', '/app/disabled-key?protocol=7', 4003],
    ['a wrong path closes with 4005', '/elsewhere?protocol=7', 4005],
    ['a non-numeric protocol closes with 4006', `/app/${APP.key}?protocol=x`, 4006],
    ['an unsupported protocol closes with 4007', `/app/${APP.key}?protocol=99`, 4007],
    ['a missing protocol closes with 4008', `/app/${APP.key}`, 4008],
  ]) {
    it(name, async () => {
      const raw = await rawSocket(broker, path);
      const error = await raw.next((m) => m.event === 'pusher:error');
      assert.equal(error.data.code, code);
      assert.equal(await raw.closed, code);
    });
  }

  it('over the app connection quota closes with 4004', async () => {
    const first = await rawSocket(broker, '/app/small-key?protocol=7');
    await first.next((m) => m.event === 'pusher:connection_established');
    const second = await rawSocket(broker, '/app/small-key?protocol=7');
    assert.equal(await second.closed, 4004);
    first.close();
  });

  it('invalid JSON gets a pusher:error and the connection stays usable', async () => {
    const raw = await rawSocket(broker, `/app/${APP.key}?protocol=7`);
    await raw.next((m) => m.event === 'pusher:connection_established');
    raw.send('this is not json');
    const error = await raw.next((m) => m.event === 'pusher:error');
    assert.equal(error.data.code, 4303);
    raw.send({ event: 'pusher:ping', data: {} });
    assert.equal((await raw.next()).event, 'pusher:pong');
    raw.close();
  });
});
