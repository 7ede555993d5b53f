import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import Echo from 'laravel-echo';
import { startBroker } from '../lib/broker.mjs';
import { pusherClient, serverSdk, connected, waitFor, disconnectAll } from '../lib/clients.mjs';

for (const broadcaster of ['pusher', 'reverb']) {
  describe(`laravel-echo (broadcaster ${broadcaster})`, () => {
    let broker;
    let sdk;
    before(async () => {
      broker = await startBroker();
      sdk = serverSdk(broker);
    });
    after(() => broker.stop());

    function echo(options = {}) {
      const client = pusherClient(broker, options);
      return { client, echo: new Echo({ broadcaster, key: 'app-key', client, withoutInterceptors: true }) };
    }

    // Resolves at once when the subscription already succeeded (its event has passed).
    function subscribedVia(channel) {
      return waitFor((resolve) => {
        if (channel.subscription.subscribed) resolve();
        else channel.subscribed(resolve);
      }, 'subscribed');
    }

    it('.channel().listen() receives a broadcast event', async () => {
      const { client, echo: e } = echo();
      const channel = e.channel('orders');
      await subscribedVia(channel);
      const got = waitFor((resolve) => channel.listen('.OrderShipped', resolve), 'OrderShipped');
      await sdk.trigger('orders', 'OrderShipped', { id: 7 });
      assert.deepEqual(await got, { id: 7 });
      disconnectAll(client);
    });

    it('.private().listen() receives on a signed channel', async () => {
      const { client, echo: e } = echo();
      const channel = e.private('orders.1');
      await subscribedVia(channel);
      const got = waitFor((resolve) => channel.listen('.Paid', resolve), 'Paid');
      await sdk.trigger('private-orders.1', 'Paid', { ok: true });
      assert.deepEqual(await got, { ok: true });
      disconnectAll(client);
    });

    it('.join() calls here, joining and leaving', async () => {
      const { client: a, echo: ea } = echo({ presence: () => ({ user_id: 1, user_info: { name: 'Ann' } }) });
      const here = await waitFor((resolve) => ea.join('room.1').here(resolve), 'here');
      assert.deepEqual(here, [{ name: 'Ann' }]);
      const joining = waitFor((resolve) => ea.join('room.1').joining(resolve), 'joining');
      const leaving = waitFor((resolve) => ea.join('room.1').leaving(resolve), 'leaving');
      const { client: b, echo: eb } = echo({ presence: () => ({ user_id: 2, user_info: { name: 'Ben' } }) });
      await waitFor((resolve) => eb.join('room.1').here(resolve), 'here for Ben');
      assert.deepEqual(await joining, { name: 'Ben' });
      b.disconnect();
      assert.deepEqual(await leaving, { name: 'Ben' });
      disconnectAll(a);
    });

    it('.whisper() reaches listenForWhisper on the other client only', async () => {
      const { client: a, echo: ea } = echo();
      const { client: b, echo: eb } = echo();
      const channelA = ea.private('chat.1');
      const channelB = eb.private('chat.1');
      await subscribedVia(channelA);
      await subscribedVia(channelB);
      const heard = waitFor((resolve) => channelB.listenForWhisper('typing', resolve), 'whisper');
      channelA.whisper('typing', { name: 'Ann' });
      assert.deepEqual(await heard, { name: 'Ann' });
      disconnectAll(a, b);
    });

    it('toOthers: a broadcast with the X-Socket-ID of a socket skips it', async () => {
      const { client: a, echo: ea } = echo();
      const { client: b, echo: eb } = echo();
      await connected(a);
      const channelA = ea.channel('feed');
      const channelB = eb.channel('feed');
      await subscribedVia(channelA);
      await subscribedVia(channelB);
      let echoedToSender = false;
      channelA.listen('.Posted', () => { echoedToSender = true; });
      const got = waitFor((resolve) => channelB.listen('.Posted', resolve), 'Posted');
      // What Laravel does for ->toOthers(): the request's X-Socket-ID becomes socket_id.
      await sdk.trigger('feed', 'Posted', { n: 1 }, { socket_id: ea.socketId() });
      assert.deepEqual(await got, { n: 1 });
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(echoedToSender, false);
      disconnectAll(a, b);
    });

    it('.private().error() fires when authorization fails', async () => {
      const { client, echo: e } = echo({ secret: 'not-the-secret' });
      const error = await waitFor((resolve) => e.private('vault').error(resolve), 'error()');
      assert.equal(error.status, 401);
      disconnectAll(client);
    });
  });
}
