import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startBroker } from '../lib/broker.mjs';
import { pusherClient, subscribed, nextEvent, nothingWithin, waitFor, disconnectAll } from '../lib/clients.mjs';

describe('client events', () => {
  let broker;
  before(async () => { broker = await startBroker(); });
  after(() => broker.stop());

  it('reach the other subscriber of a private channel and are not echoed', async () => {
    const a = pusherClient(broker);
    const b = pusherClient(broker);
    const { channel: ca } = await subscribed(a, 'private-chat');
    const { channel: cb } = await subscribed(b, 'private-chat');
    const got = nextEvent(cb, 'client-typing');
    const noEcho = nothingWithin(ca, 'client-typing');
    assert.ok(ca.trigger('client-typing', { typing: true }));
    assert.deepEqual((await got).data, { typing: true });
    await noEcho;
    disconnectAll(a, b);
  });

  it('carry the sender user_id on presence channels', async () => {
    const a = pusherClient(broker, { presence: () => ({ user_id: 'sender' }) });
    const b = pusherClient(broker, { presence: () => ({ user_id: 'receiver' }) });
    const { channel: ca } = await subscribed(a, 'presence-chat');
    const { channel: cb } = await subscribed(b, 'presence-chat');
    const got = nextEvent(cb, 'client-hello');
    ca.trigger('client-hello', 'hi');
    const { data, metadata } = await got;
    assert.equal(data, 'hi');
    assert.equal(metadata.user_id, 'sender');
    disconnectAll(a, b);
  });

  it('are refused on public channels with a pusher:error', async () => {
    const a = pusherClient(broker);
    const { channel } = await subscribed(a, 'public-chat');
    const error = waitFor((resolve) => a.connection.bind('error', resolve), 'pusher:error');
    a.send_event('client-x', { a: 1 }, 'public-chat');
    const { data } = await error;
    assert.equal(data.code, 4305);
    assert.equal(a.connection.state, 'connected');
    void channel;
    disconnectAll(a);
  });

  it('over 10 per second get 4301 and the connection stays open', async () => {
    const a = pusherClient(broker);
    const b = pusherClient(broker);
    const { channel: ca } = await subscribed(a, 'private-flood');
    const { channel: cb } = await subscribed(b, 'private-flood');
    let received = 0;
    cb.bind('client-n', () => { received += 1; });
    const limited = waitFor((resolve) => a.connection.bind('error', (e) => e.data?.code === 4301 && resolve(e)), '4301');
    for (let i = 0; i < 11; i += 1) ca.trigger('client-n', i);
    await limited;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(received, 10);
    assert.equal(a.connection.state, 'connected');
    disconnectAll(a, b);
  });
});
