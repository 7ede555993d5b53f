// Native TLS: unmodified pusher-js with `forceTLS: true`, laravel-echo, and the pusher SDK with
// `useTLS: true` against a broker serving its own certificate, trusted through
// NODE_EXTRA_CA_CERTS (set by scripts/conformance); and a certificate reload by SIGHUP while a
// client stays connected.

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { MAIN_APP, startBroker, tlsFiles } from '../lib/broker.mjs';
import { disconnectAll, echoClient, echoSubscribed, newUser, pusherClient, serverSdk, uniq } from '../lib/clients.mjs';
import { nextOn, sioClient, subscribe } from '../lib/socketio.mjs';
import { TEST_TIMEOUT_MS, waitFor } from '../lib/wait.mjs';

const T = { timeout: TEST_TIMEOUT_MS };

/** The fingerprint of the certificate the broker presents to a new connection. */
function servedFingerprint(broker) {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: broker.host, port: broker.port, servername: 'localhost' }, () => {
      const fingerprint = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fingerprint);
    });
    socket.once('error', reject);
  });
}

/** The fingerprint of the first certificate in a PEM chain file. */
async function fileFingerprint(path) {
  return new X509Certificate(await readFile(path)).fingerprint256;
}

describe('tls', () => {
  let broker;
  let sdk;
  before(async () => {
    broker = await startBroker({ tls: true, apps: [{ ...MAIN_APP, socketio: {} }] });
    sdk = serverSdk(broker);
  });
  after(async () => {
    disconnectAll();
    await broker?.stop();
  });

  it('pusher-js with forceTLS connects over wss and receives what the SDK triggers over https', T, async (t) => {
    assert.equal(sdk.config.scheme, 'https');
    const client = await pusherClient(t, broker);
    assert.equal(client.pusher.config.useTLS, true, 'pusher-js uses wss');
    const channel = await client.subscribe(uniq('tls-news-'));
    const got = client.nextEvent(channel, 'headline');
    await sdk.trigger(channel.name, 'headline', { text: 'over TLS' });
    const [data] = await got;
    assert.deepEqual(data, { text: 'over TLS' });
  });

  for (const transports of [['websocket'], ['polling', 'websocket']]) {
    it(`socket.io-client (${transports.join(', then ')}) receives what the SDK triggers over https`, T, async (t) => {
      const socket = await sioClient(t, broker, { transports });
      const channel = uniq('tls-sio-');
      await subscribe(socket, channel);
      for (let n = 0; n < 5; n++) {
        const got = nextOn(socket, 'headline', channel);
        await sdk.trigger(channel, 'headline', { n });
        assert.deepEqual(await got, { n });
      }
    });
  }

  it('private and presence channels work over wss, member_added included', T, async (t) => {
    const alice = newUser('alice');
    const bob = newUser('bob');
    const a = await pusherClient(t, broker, { user: alice });
    const room = await a.subscribe(uniq('presence-tls-'));
    const added = a.nextEvent(room, 'pusher:member_added');
    const b = await pusherClient(t, broker, { user: bob });
    await b.subscribe(room.name);
    const [member] = await added;
    assert.deepEqual(member, { id: bob.user_id, info: bob.user_info });

    const secret = await a.subscribe(uniq('private-tls-'));
    const got = a.nextEvent(secret, 'note');
    await sdk.trigger(secret.name, 'note', { n: 1 });
    assert.deepEqual((await got)[0], { n: 1 });
  });

  it('laravel-echo (reverb broadcaster) with forceTLS listens over wss', T, async (t) => {
    const { echo } = await echoClient(t, broker, { broadcaster: 'reverb' });
    const name = uniq('orders-');
    const channel = echo.channel(name);
    await echoSubscribed(channel);
    const got = new Promise((resolve) => channel.listen('.shipped', resolve));
    await sdk.trigger(name, 'shipped', { id: 7 });
    assert.deepEqual(await got, { id: 7 });
  });

  it('SIGHUP serves a new certificate to new connections while a live client stays', T, async (t) => {
    const files = tlsFiles();
    const client = await pusherClient(t, broker);
    const channel = await client.subscribe(uniq('tls-live-'));
    assert.equal(await servedFingerprint(broker), await fileFingerprint(broker.certFile));

    await copyFile(files.secondCert, broker.certFile);
    await copyFile(files.secondKey, broker.keyFile);
    const second = await fileFingerprint(files.secondCert);
    broker.child.kill('SIGHUP');
    await waitFor(async () => (await servedFingerprint(broker)) === second, { what: 'the new certificate' });

    const got = client.nextEvent(channel, 'after-reload');
    await sdk.trigger(channel.name, 'after-reload', { ok: true });
    assert.deepEqual((await got)[0], { ok: true });
    assert.equal(broker.exit, null, 'SIGHUP must not end the broker');
  });
});
