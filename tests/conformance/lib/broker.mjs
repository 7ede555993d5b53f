// Starts the real ringcast binary with a generated config and stops it again.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, existsSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BINARY = process.env.RINGCAST_BIN ?? join(repo, 'target', 'debug', 'ringcast');

/** The app every suite uses unless it passes its own. */
export const APP = { id: '100001', key: 'app-key', secret: 'app-secret' };

function tomlValue(value) {
  if (Array.isArray(value)) return `[${value.map(tomlValue).join(', ')}]`;
  if (typeof value === 'string') return JSON.stringify(value);
  return String(value);
}

function toml(server, apps) {
  const lines = ['[server]'];
  for (const [k, v] of Object.entries(server)) lines.push(`${k} = ${tomlValue(v)}`);
  for (const app of apps) {
    lines.push('', '[[apps]]');
    for (const [k, v] of Object.entries(app)) lines.push(`${k} = ${tomlValue(v)}`);
  }
  return lines.join('\n') + '\n';
}

/**
 * Starts a broker on 127.0.0.1 with an ephemeral port.
 * @param {{server?: object, apps?: object[]}} options
 */
export async function startBroker({ server = {}, apps = [APP] } = {}) {
  if (!existsSync(BINARY)) {
    throw new Error(`ringcast binary not found at ${BINARY}: run \`cargo build -p ringcast\` or set RINGCAST_BIN`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'ringcast-conf-'));
  const config = join(dir, 'ringcast.toml');
  writeFileSync(
    config,
    toml({ host: '127.0.0.1', port: 0, shards: 2, data_dir: join(dir, 'data'), ...server }, apps),
  );
  const child = spawn(BINARY, ['serve', '--config', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const address = await new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`broker did not start within 10 s\nstderr:\n${stderr}`));
    }, 10_000);
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = stdout.match(/listening on (\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker exited with ${code} before listening\nstderr:\n${stderr}`));
    });
  });
  const port = Number(address.split(':').pop());
  return {
    host: '127.0.0.1',
    port,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
