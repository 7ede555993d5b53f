// laravel-echo against the broker, both as `broadcaster: 'pusher'` (given a pusher-js client) and
// as `broadcaster: 'reverb'` (building its own pusher-js from the options, as a Laravel app does).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBroker } from '../lib/broker.mjs';
import {
  SOCKET_ID_RE,
  WRONG_SECRET,
  disconnectAll,
  echoClient,
  echoSubscribed,
  expectSilence,
  newUser,
  serverSdk,
  uniq,
} from '../lib/clients.mjs';
import { Recorder, TEST_TIMEOUT_MS, withTimeout } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

/** Resolves with the first argument of the next call of an Echo-style callback registration. */
function nextCall(register, what) {
  return withTimeout(new Promise((res) => register(res)), 3_000, what);
}

describe('laravel-echo', () => {
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

  for (const broadcaster of ['pusher', 'reverb']) {
    describe(`broadcaster ${broadcaster}`, () => {
      it('.channel().listen(".event") receives an event triggered with the server SDK', T, async (t) => {
        const { echo } = await echoClient(t, broker, { broadcaster });
        const name = uniq('news-');
        const channel = echo.channel(name);
        const got = nextCall((cb) => channel.listen('.OrderShipped', cb), '.OrderShipped');
        await echoSubscribed(channel);
        await sdk.trigger(name, 'OrderShipped', { order: 42 });
        assert.deepEqual(await got, { order: 42 });
      });

      it('.listen() without a leading dot uses the App.Events namespace', T, async (t) => {
        const { echo } = await echoClient(t, broker, { broadcaster });
        const name = uniq('news-');
        const channel = echo.channel(name);
        const got = nextCall((cb) => channel.listen('OrderShipped', cb), 'App\\Events\\OrderShipped');
        await echoSubscribed(channel);
        await sdk.trigger(name, 'App\\Events\\OrderShipped', { order: 43 });
        assert.deepEqual(await got, { order: 43 });
      });

      it('.private().listen() subscribes with a signature and receives events', T, async (t) => {
        const { echo } = await echoClient(t, broker, { broadcaster });
        const name = uniq('orders-');
        const channel = echo.private(name);
        const got = nextCall((cb) => channel.listen('.Updated', cb), '.Updated');
        await echoSubscribed(channel);
        await sdk.trigger(`private-${name}`, 'Updated', { status: 'paid' });
        assert.deepEqual(await got, { status: 'paid' });
      });

      it('.join() calls here() with the members, then joining() and leaving() as others come and go', T, async (t) => {
        const alice = newUser('alice');
        const bob = newUser('bob');
        const room = uniq('room-');
        const a = await echoClient(t, broker, { broadcaster, user: alice });
        const joining = new Recorder();
        const leaving = new Recorder();
        const aHere = nextCall(
          (cb) => a.echo.join(room).here(cb).joining(joining.fn).leaving(leaving.fn),
          'here() for alice',
        );
        assert.deepEqual(await aHere, [alice.user_info]);

        const b = await echoClient(t, broker, { broadcaster, user: bob });
        const bHere = nextCall((cb) => b.echo.join(room).here(cb), 'here() for bob');
        const herebob = await bHere;
        assert.deepEqual(
          herebob.map((u) => u.name).sort(),
          [alice.user_info.name, bob.user_info.name].sort(),
        );
        const [joined] = await joining.first(() => true, { what: 'joining()' });
        assert.deepEqual(joined, bob.user_info);

        b.echo.leave(room);
        const [left] = await leaving.first(() => true, { what: 'leaving()' });
        assert.deepEqual(left, bob.user_info);
        assert.equal(joining.calls.length, 1);
      });

      it('.private().whisper() reaches .listenForWhisper() on another client, not the sender', T, async (t) => {
        const name = uniq('chat-');
        const a = await echoClient(t, broker, { broadcaster });
        const b = await echoClient(t, broker, { broadcaster });
        const aChannel = a.echo.private(name);
        const bChannel = b.echo.private(name);
        const echoed = [];
        aChannel.listenForWhisper('typing', (d) => echoed.push(d));
        const got = nextCall((cb) => bChannel.listenForWhisper('typing', cb), 'whisper');
        await Promise.all([echoSubscribed(aChannel), echoSubscribed(bChannel)]);
        aChannel.whisper('typing', { name: 'a' });
        assert.deepEqual(await got, { name: 'a' });
        await expectSilence(() => echoed.length, 'whisper echoed to its sender');
      });

      it('toOthers: an event triggered with socket_id = echo.socketId() skips that client only', T, async (t) => {
        const name = uniq('feed-');
        const a = await echoClient(t, broker, { broadcaster });
        const b = await echoClient(t, broker, { broadcaster });
        assert.match(a.echo.socketId(), SOCKET_ID_RE);
        const aChannel = a.echo.channel(name);
        const bChannel = b.echo.channel(name);
        const aSeen = [];
        aChannel.listen('.Posted', (d) => aSeen.push(d));
        const bGot = nextCall((cb) => bChannel.listen('.Posted', cb), '.Posted on b');
        await Promise.all([echoSubscribed(aChannel), echoSubscribed(bChannel)]);
        await sdk.trigger(name, 'Posted', { n: 1 }, { socket_id: a.echo.socketId() });
        assert.deepEqual(await bGot, { n: 1 });
        const marker = nextCall((cb) => aChannel.listen('.Marker', cb), '.Marker on a');
        await sdk.trigger(name, 'Marker', {});
        await marker;
        assert.deepEqual(aSeen, []);
      });

      it('.private().error() fires with status 401 when the signature is wrong', T, async (t) => {
        const { echo, client } = await echoClient(t, broker, { broadcaster, authSecret: WRONG_SECRET });
        const channel = echo.private(uniq('vault-'));
        const error = await nextCall((cb) => channel.error(cb), '.error()');
        assert.equal(error.status, 401, JSON.stringify(error));
        assert.equal(error.type, 'AuthError');
        assert.equal(client.state, 'connected', 'the connection stays open after an auth failure');
      });

      it('.channel().error() fires with status 400 for a name over 200 characters', T, async (t) => {
        const { echo, client } = await echoClient(t, broker, { broadcaster });
        const channel = echo.channel(uniq('long-') + 'x'.repeat(200));
        const error = await nextCall((cb) => channel.error(cb), '.error()');
        assert.equal(error.status, 400, JSON.stringify(error));
        assert.equal(error.type, 'InvalidChannel');
        assert.match(error.error, /longer than 200 characters/);
        assert.equal(client.state, 'connected', 'the connection stays open');
        const fine = echo.channel(uniq('after-'));
        await echoSubscribed(fine);
      });
    });
  }
});
