// A real `redis-server` (installed by scripts/setup) on a free 127.0.0.1 port, for cluster tests.

import { spawn } from 'node:child_process';
import { mkdtemp } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sleep } from './wait.mjs';

async function freePort() {
  const server = createServer();
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  const { port } = server.address();
  await new Promise((res) => server.close(res));
  return port;
}

function ping(port) {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.on('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (d) => {
      socket.destroy();
      resolve(d.toString().startsWith('+PONG'));
    });
    socket.on('error', () => resolve(false));
  });
}

/** Starts redis-server without persistence; `stop()` kills it. */
export async function startRedis() {
  const port = await freePort();
  const dir = await mkdtemp(join(tmpdir(), 'ringcast-redis-'));
  const child = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no', '--dir', dir], {
    stdio: 'ignore',
  });
  for (let i = 0; i < 200 && !(await ping(port)); i++) await sleep(25);
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      child.kill('SIGKILL');
      await new Promise((res) => (child.exitCode !== null ? res() : child.once('exit', res)));
    },
  };
}

/**
 * A Redis and one broker per address in `hosts`, all in one cluster, resolved once every node
 * says it has synchronized (`/up` health `ok`). `stop()` stops the nodes, then Redis.
 *
 * @param {string[]} hosts loopback addresses, one node each
 * @param {object} [opts] passed to `startBroker` for every node (`apps`, ...)
 */
export async function startCluster(hosts, opts = {}) {
  const { startBroker } = await import('./broker.mjs');
  const { waitFor } = await import('./wait.mjs');
  const redis = await startRedis();
  const cluster = { redis_url: redis.url, node_timeout_secs: 3 };
  const nodes = await Promise.all(hosts.map((host) => startBroker({ ...opts, server: { host }, cluster })));
  for (const node of nodes) {
    await waitFor(async () => (await (await fetch(`${node.httpBase}/up`)).json()).health === 'ok', {
      what: `${node.httpBase} to synchronize`,
    });
  }
  return {
    redis,
    nodes,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
      await redis.stop();
    },
  };
}
