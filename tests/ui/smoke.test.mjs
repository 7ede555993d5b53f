// Smoke test for the admin UI: serves target/admin-ui/dist at /admin/ (as the broker does) from a
// tiny static server, opens it in Debian's Chromium through playwright-core, waits for the
// heading the wasm app renders and saves a screenshot under target/ui-screenshots/.
// Run with `scripts/ui-test` (builds first) or `node --test tests/ui/`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtemp, mkdir, readFile, rm, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.join(ROOT, 'target/admin-ui/dist');
const SHOTS = path.join(ROOT, 'target/ui-screenshots');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Quiet on a closed network (TOOLCHAIN.md); headless and --no-sandbox come from Playwright.
const CHROMIUM_ARGS = [
  '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm', // needed for WebAssembly.instantiateStreaming
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
};

/** Serves DIST under /admin/; anything else is a 404. */
function staticServer() {
  return createServer(async (req, res) => {
    const { pathname } = new URL(req.url, 'http://localhost');
    if (pathname === '/admin') return void res.writeHead(308, { location: '/admin/' }).end();
    let rel = pathname.startsWith('/admin/') ? decodeURIComponent(pathname.slice('/admin/'.length)) : null;
    if (rel === '') rel = 'index.html';
    const file = rel === null ? null : path.join(DIST, rel);
    if (!file || !file.startsWith(DIST + path.sep)) return void res.writeHead(404).end();
    try {
      if (!(await stat(file)).isFile()) throw new Error('not a file');
      const body = await readFile(file);
      const type = MIME[path.extname(file)] ?? 'application/octet-stream';
      res.writeHead(200, { 'content-type': type, 'cache-control': 'no-store' }).end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
}

let server, baseUrl, context, userDataDir;

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST} is missing: run scripts/build-admin-ui`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  server = staticServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}`;
  // A fresh profile per run; launchPersistentContext is how Playwright takes a user-data-dir.
  userDataDir = await mkdtemp(path.join(tmpdir(), 'ringcast-ui-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
});

after(async () => {
  await context?.close();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve()));
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
});

test('admin UI boots from /admin/ and renders its heading', { timeout: 60_000 }, async () => {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' || msg.type() === 'warning') problems.push(`console.${msg.type()}: ${msg.text()}`);
  });
  const wasmTypes = [];
  page.on('response', (res) => {
    if (res.url().endsWith('.wasm')) wasmTypes.push(res.headers()['content-type']);
    if (res.status() >= 400) problems.push(`HTTP ${res.status()}: ${res.url()}`);
  });

  const res = await page.goto(`${baseUrl}/admin/`);
  assert.equal(res.status(), 200);
  const heading = page.getByRole('heading', { level: 1, name: 'Ringcast admin' });
  await heading.waitFor({ timeout: 30_000 });
  assert.match(await page.locator('main.ringcast-admin p').innerText(), /Admin dashboard/);
  assert.deepEqual(wasmTypes, ['application/wasm']);

  await mkdir(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, 'admin-smoke.png'), fullPage: true });
  // Phone-sized too, for the viewport meta.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(SHOTS, 'admin-smoke-mobile.png') });

  assert.deepEqual(problems, [], 'the page logged errors or warnings');
  await page.close();
});
