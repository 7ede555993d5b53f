// Starts and stops a real `ringcast serve` process for one test file.
//
// Each test file calls `startBroker()` in `before` and `broker.stop()` in `after`; the broker binds
// port 0 and announces its address on stdout (`ringcast: listening on 127.0.0.1:41234`).

import { spawn } from 'node:child_process';
import { accessSync, constants as fsConstants, existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (this file lives in `<repo>/tests/conformance/lib/`). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

/** How long the broker may take to print its `listening on` line. */
export const START_TIMEOUT_MS = 10_000;
/** How long `stop()` waits after SIGTERM before sending SIGKILL. */
export const STOP_GRACE_MS = 5_000;

const LISTENING_RE = /listening on (\S+)/;
const LOG_TAIL_BYTES = 64 * 1024;

/** The app every test uses unless it says otherwise. */
export const MAIN_APP = Object.freeze({
  id: '100001',
  key: 'app-key',
  secret: 'app-secret',
  client_events: 'enabled',
  client_events_per_second: 10,
  max_presence_members: 100,
  max_message_bytes: 10240,
  allowed_origins: ['*'],
  max_connections: 0,
});

/** An app switched off in the config: connections to it are closed with 4003. */
export const DISABLED_APP = Object.freeze({
  ...MAIN_APP,
  id: '100002',
  key: 'disabled-key',
  secret: 'disabled-secret',
  enabled: false,
});

/** An app that admits at most two connections: the third is closed with 4004. */
export const LIMITED_APP = Object.freeze({
  ...MAIN_APP,
  id: '100003',
  key: 'limited-key',
  secret: 'limited-secret',
  max_connections: 2,
});

/** An app that accepts only one browser origin: any other is closed with 4009. */
export const ORIGIN_APP = Object.freeze({
  ...MAIN_APP,
  id: '100004',
  key: 'origin-key',
  secret: 'origin-secret',
  allowed_origins: ['https://allowed.example'],
});

/** An app whose clients may not send client events at all. */
export const NO_CLIENT_EVENTS_APP = Object.freeze({
  ...MAIN_APP,
  id: '100005',
  key: 'quiet-key',
  secret: 'quiet-secret',
  client_events: 'disabled',
});

/** The apps configured when a test file does not pass its own list. */
export const DEFAULT_APPS = Object.freeze([
  MAIN_APP,
  DISABLED_APP,
  LIMITED_APP,
  ORIGIN_APP,
  NO_CLIENT_EVENTS_APP,
]);

/**
 * The suite's test certificates, made by `scripts/conformance` (a CA, trusted by Node through
 * `NODE_EXTRA_CA_CERTS`, and two server certificates it signed for localhost and 127.0.0.1).
 */
export function tlsFiles() {
  const dir = process.env.RINGCAST_TEST_TLS_DIR;
  if (!dir || !existsSync(join(dir, 'server.crt'))) {
    throw new Error('RINGCAST_TEST_TLS_DIR is not set: run the suite through scripts/conformance');
  }
  return {
    ca: join(dir, 'ca.crt'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
    secondCert: join(dir, 'second.crt'),
    secondKey: join(dir, 'second.key'),
  };
}

/** Path of the broker binary: `RINGCAST_BIN`, else `<repo>/target/debug/ringcast`. */
export function brokerBinary() {
  return process.env.RINGCAST_BIN || join(REPO_ROOT, 'target', 'debug', 'ringcast');
}

/** Throws a readable error when the broker binary is missing or not executable. */
export function assertBrokerBinary(bin = brokerBinary()) {
  if (!existsSync(bin)) {
    throw new Error(
      `ringcast binary not found at ${bin}. Build it first (cargo build -p ringcast) ` +
        'or point RINGCAST_BIN at an existing binary.',
    );
  }
  try {
    accessSync(bin, fsConstants.X_OK);
  } catch {
    throw new Error(`ringcast binary at ${bin} is not executable.`);
  }
  return bin;
}

function tomlValue(value) {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`;
  if (value && typeof value === 'object') {
    // Nested objects (policy alternatives, attributes) become inline tables.
    return `{ ${Object.entries(value).map(([k, v]) => `${k} = ${tomlValue(v)}`).join(', ')} }`;
  }
  throw new Error(`cannot write ${typeof value} as TOML`);
}

/** Renders the broker config. `server` keys override the defaults; every app is written as given. */
export function renderConfig({ server, apps, cluster }) {
  const lines = ['[server]'];
  for (const [k, v] of Object.entries(server)) lines.push(`${k} = ${tomlValue(v)}`);
  if (cluster) {
    lines.push('', '[cluster]');
    for (const [k, v] of Object.entries(cluster)) lines.push(`${k} = ${tomlValue(v)}`);
  }
  const isTableList = (v) => Array.isArray(v) && v.length > 0 && v.every((x) => x && typeof x === 'object' && !Array.isArray(x));
  for (const app of apps) {
    lines.push('', '[[apps]]');
    const tables = [];
    for (const [k, v] of Object.entries(app)) {
      if (isTableList(v)) tables.push([k, v]);
      else lines.push(`${k} = ${tomlValue(v)}`);
    }
    // Arrays of objects (policies, webhooks) become [[apps.<key>]] sub-tables after the scalars.
    for (const [k, list] of tables) {
      for (const table of list) {
        lines.push(`[[apps.${k}]]`);
        for (const [tk, tv] of Object.entries(table)) lines.push(`${tk} = ${tomlValue(tv)}`);
      }
    }
  }
  return lines.join('\n') + '\n';
}

/** Splits `127.0.0.1:41234`, `[::1]:41234` or `http://127.0.0.1:41234/` into host and port. */
export function parseListenAddress(text) {
  const bare = text.replace(/^[a-z]+:\/\//i, '').replace(/\/.*$/, '');
  const m = /^\[?([^\]]*?)\]?:(\d+)$/.exec(bare);
  if (!m) throw new Error(`cannot parse broker address '${text}'`);
  let host = m[1];
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::') host = '::1';
  return { host, port: Number(m[2]) };
}

function appendTail(buf, chunk) {
  const next = buf + chunk;
  return next.length > LOG_TAIL_BYTES ? next.slice(next.length - LOG_TAIL_BYTES) : next;
}

/**
 * Writes a fresh config, starts `ringcast serve --config <file>` and resolves once the broker has
 * announced its address.
 *
 * @param {object} [opts]
 * @param {object[]} [opts.apps] apps to configure (default `DEFAULT_APPS`)
 * @param {object} [opts.server] overrides for the `[server]` table
 * @param {object} [opts.cluster] a `[cluster]` table (cluster mode through Redis)
 * @param {boolean} [opts.tls] serve wss:// and https:// with the suite's test certificate
 *   (see `tlsFiles`); the broker's copy of it is `broker.certFile` / `broker.keyFile`
 * @returns {Promise<Broker>}
 */
export async function startBroker({ apps = DEFAULT_APPS, server = {}, cluster, tls = false } = {}) {
  const bin = assertBrokerBinary();
  const dir = await mkdtemp(join(tmpdir(), 'ringcast-conf-'));
  const dataDir = join(dir, 'data');
  const configPath = join(dir, 'ringcast.toml');
  const serverTable = {
    host: '127.0.0.1',
    port: 0,
    shards: 2,
    activity_timeout_secs: 120,
    data_dir: dataDir,
    ...server,
  };
  if (tls) {
    // A copy per broker, so that a test may replace it and send SIGHUP.
    const files = tlsFiles();
    serverTable.tls = { cert_file: join(dir, 'server.crt'), key_file: join(dir, 'server.key') };
    await copyFile(files.cert, serverTable.tls.cert_file);
    await copyFile(files.key, serverTable.tls.key_file);
  }
  await writeFile(configPath, renderConfig({ server: serverTable, apps, cluster }));

  const child = spawn(bin, ['serve', '--config', configPath], {
    cwd: dir,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_BACKTRACE: '1', NO_COLOR: '1' },
  });
  const broker = new Broker(child, { dir, configPath, apps, tls });
  try {
    await broker.ready();
  } catch (err) {
    await broker.stop();
    throw err;
  }
  return broker;
}

/** A running broker process. */
export class Broker {
  constructor(child, { dir, configPath, apps, tls = false }) {
    this.child = child;
    /** Whether the broker speaks TLS (`https://`, `wss://`). */
    this.tls = tls;
    this.certFile = tls ? join(dir, 'server.crt') : null;
    this.keyFile = tls ? join(dir, 'server.key') : null;
    this.dir = dir;
    this.configPath = configPath;
    this.apps = apps;
    this.app = apps[0];
    this.stdout = '';
    this.stderr = '';
    this.exit = null;
    this.host = null;
    this.port = null;

    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    // Both pipes are drained for the broker's whole life: a full pipe would block its logging.
    child.stdout.on('data', (c) => (this.stdout = appendTail(this.stdout, c)));
    child.stderr.on('data', (c) => (this.stderr = appendTail(this.stderr, c)));
    this.exited = new Promise((res) => {
      child.once('exit', (code, signal) => {
        this.exit = { code, signal };
        res(this.exit);
      });
      child.once('error', (error) => {
        this.exit = { code: null, signal: null, error };
        res(this.exit);
      });
    });
  }

  /** The app with the given key (throws when it is not configured). */
  appByKey(key) {
    const app = this.apps.find((a) => a.key === key);
    if (!app) throw new Error(`no app with key ${key} in this broker's config`);
    return app;
  }

  /** `http://host:port` (or `https://`) of the broker (HTTP API, /up, /metrics). */
  get httpBase() {
    const scheme = this.tls ? 'https' : 'http';
    return `${scheme}://${this.host.includes(':') ? `[${this.host}]` : this.host}:${this.port}`;
  }

  /** `ws://host:port` of the broker. */
  get wsBase() {
    return this.httpBase.replace(/^http/, 'ws');
  }

  describeFailure(what) {
    return (
      `${what}\n--- broker stderr (tail) ---\n${this.stderr || '(empty)'}` +
      `\n--- broker stdout (tail) ---\n${this.stdout || '(empty)'}`
    );
  }

  ready() {
    return new Promise((res, rej) => {
      let done = false;
      const buffers = { stdout: '', stderr: '' };
      const watchers = {};
      for (const name of ['stdout', 'stderr']) {
        watchers[name] = (chunk) => {
          buffers[name] += chunk;
          const m = LISTENING_RE.exec(buffers[name]);
          if (!m) return;
          try {
            Object.assign(this, parseListenAddress(m[1]));
          } catch (err) {
            return finish(err);
          }
          finish(null);
        };
      }
      const timer = setTimeout(
        () => finish(new Error(this.describeFailure(`ringcast did not print 'listening on' within ${START_TIMEOUT_MS} ms`))),
        START_TIMEOUT_MS,
      );
      const onExit = () => {
        const { code, signal, error } = this.exit;
        finish(
          new Error(
            this.describeFailure(
              error
                ? `ringcast failed to start: ${error.message}`
                : `ringcast exited before listening (code ${code}, signal ${signal})`,
            ),
          ),
        );
      };
      const finish = (err) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        this.child.stdout.off('data', watchers.stdout);
        this.child.stderr.off('data', watchers.stderr);
        if (err) rej(err);
        else res(this);
      };
      // The contract is a stdout line; stderr is watched too so that a broker logging through
      // tracing's stderr writer still starts (the address line itself is what matters).
      this.child.stdout.on('data', watchers.stdout);
      this.child.stderr.on('data', watchers.stderr);
      this.exited.then(() => {
        if (this.host === null) onExit();
      });
    });
  }

  /** SIGTERM, then SIGKILL after `STOP_GRACE_MS`; removes the temporary config and data dir. */
  async stop() {
    if (this.exit === null && this.child.pid !== undefined) {
      this.child.kill('SIGTERM');
      let timer;
      const killed = new Promise((res) => {
        timer = setTimeout(() => {
          if (this.exit === null) this.child.kill('SIGKILL');
          res();
        }, STOP_GRACE_MS);
      });
      await Promise.race([this.exited, killed]);
      await this.exited;
      clearTimeout(timer);
    }
    await rm(this.dir, { recursive: true, force: true });
    return this.exit;
  }
}
