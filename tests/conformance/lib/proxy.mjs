// A TCP proxy in front of the broker, for tests that cut a client's connection the way a network
// does: `cut()` destroys every proxied socket (the broker sees its TCP connection end, with no
// close frame) and refuses new connections until `restore()`, so a client's own reconnect
// happens when the test allows it.

import net from 'node:net';

/** Starts a proxy on 127.0.0.1 forwarding to `broker`; `proxy.port` is where clients connect. */
export async function startProxy(broker) {
  const pairs = new Set();
  let refusing = false;
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect({ host: broker.host, port: broker.port });
    const pair = { client, upstream };
    pairs.add(pair);
    const drop = () => {
      pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    host: '127.0.0.1',
    port: server.address().port,
    tls: false,
    /** Destroys every proxied connection and refuses new ones. */
    cut() {
      refusing = true;
      for (const { client, upstream } of [...pairs]) {
        client.destroy();
        upstream.destroy();
      }
      pairs.clear();
    },
    /** Accepts connections again. */
    restore() {
      refusing = false;
    },
    async stop() {
      this.cut();
      await new Promise((res) => server.close(res));
    },
  };
}
