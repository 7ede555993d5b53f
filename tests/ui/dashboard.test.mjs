// The admin dashboard in a real browser against a real broker: Debian's Chromium driven by
// playwright-core, the broker binary serving target/admin-ui/dist at /admin/. Signs in (after a
// refused attempt that must show an error and reach the security feed), watches the overview's
// connection count follow WebSocket clients, opens the apps page, and saves screenshots of each
// page, wide and narrow, under target/ui-screenshots/. A cluster node names its cluster, and a
// broker with [server.tls] serves the dashboard over https with a Secure session cookie.
// Run with `scripts/ui-test` (builds first) or `node --test tests/ui/`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { startRedis } from '../conformance/lib/redis.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const DIST = path.join(ROOT, 'target/admin-ui/dist');
const SHOTS = path.join(ROOT, 'target/ui-screenshots');
const BROKER = process.env.RINGCAST_BIN ?? path.join(ROOT, 'target/debug/ringcast');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
// Quiet on a closed network (TOOLCHAIN.md); headless and --no-sandbox come from Playwright.
const CHROMIUM_ARGS = [
  '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync',
];
const PASSWORD = 'correct horse battery staple';
const APP = { id: 'ui-app', key: 'ui-key', secret: 'ui-secret' };

let broker, baseUrl, context, scratch;
const extraBrokers = [];

/**
 * Starts a broker on a free port and resolves with its address; `name` keeps its files
 * apart, `host` its address, `cluster` (a `[cluster]` TOML body) puts it in a cluster, and
 * `tls` (a directory made by scripts/test-certs) has it serve https:// and wss://.
 */
async function startBroker({ name = 'main', host = '127.0.0.1', cluster, tls } = {}) {
  const hash = execFileSync(BROKER, ['hash-password'], { input: PASSWORD }).toString().trim();
  const config = path.join(scratch, `${name}.toml`);
  await writeFile(config, `
[server]
host = "${host}"
port = 0
shards = 2
data_dir = "${path.join(scratch, `${name}-data`)}"
admin_ui_dir = "${DIST}"
${tls ? `\n[server.tls]\ncert_file = "${tls}/server.crt"\nkey_file = "${tls}/server.key"\n` : ''}
${cluster ? `\n[cluster]\n${cluster}\n` : ''}
[[apps]]
id = "${APP.id}"
key = "${APP.key}"
secret = "${APP.secret}"

[apps.history]
channels = ["private-tenant.{tenant}.escrow.{id}.chat"]

[[apps.policies]]
name = "escrow-chat"
channel = "tenant.{tenant}.escrow.{id}.chat"
tenant = "{tenant}"
resource = "escrow:{id}"
allow = [
  { participant = true },
  { role = "admin", attributes = { status = "DISPUTED" } },
]

[[admins]]
name = "ops"
password_hash = "${hash}"
`);
  const child = spawn(BROKER, ['serve', '--config', config], { stdio: ['ignore', 'pipe', 'inherit'] });
  if (name === 'main') broker = child;
  else extraBrokers.push(child);
  return new Promise((resolve, reject) => {
    let out = '';
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const m = out.match(/listening on (\S+)/);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`broker exited with ${code}`)));
  });
}

before(async () => {
  assert.ok(existsSync(path.join(DIST, 'index.html')), `${DIST} is missing: run scripts/build-admin-ui`);
  assert.ok(existsSync(BROKER), `${BROKER} is missing: cargo build -p ringcast`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`);
  scratch = await mkdtemp(path.join(tmpdir(), 'ringcast-ui-'));
  baseUrl = `http://${await startBroker()}`;
  // A fresh profile per run; launchPersistentContext is how Playwright takes a user-data-dir.
  context = await chromium.launchPersistentContext(path.join(scratch, 'profile'), {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport: { width: 1280, height: 800 },
  });
  await mkdir(SHOTS, { recursive: true });
});

after(async () => {
  await context?.close();
  broker?.kill('SIGTERM');
  for (const child of extraBrokers) child.kill('SIGTERM');
  if (scratch) await rm(scratch, { recursive: true, force: true });
});

/** A signed call to the app's HTTP API, as the Laravel backend makes it. */
async function appApi(method, apiPath, body) {
  const text = JSON.stringify(body);
  const params = new URLSearchParams({
    auth_key: APP.key,
    auth_timestamp: String(Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    body_md5: createHash('md5').update(text).digest('hex'),
  });
  params.sort();
  const query = params.toString();
  const signature = createHmac('sha256', APP.secret).update(`${method}\n${apiPath}\n${query}`).digest('hex');
  const res = await fetch(`${baseUrl}${apiPath}?${query}&auth_signature=${signature}`, {
    method,
    headers: { 'content-type': 'application/json' },
    body: text,
  });
  assert.equal(res.status, 200, await res.text());
}

/** Saves the page wide and narrow (a phone's width). */
async function shoot(page, name) {
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(SHOTS, `${name}-mobile.png`), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
}

test('sign-in, live overview and apps', { timeout: 120_000 }, async () => {
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().includes('401')) problems.push(`console: ${msg.text()}`);
  });
  const wasmTypes = [];
  page.on('response', (res) => {
    if (res.url().endsWith('.wasm')) wasmTypes.push(res.headers()['content-type']);
  });

  await page.goto(`${baseUrl}/admin/`);
  const form = page.locator('form.signin');
  await form.waitFor({ timeout: 30_000 });
  assert.deepEqual(wasmTypes, ['application/wasm']);

  // A wrong password: an error on the page, and a security event in the feed.
  await page.getByLabel('Name').fill('ops');
  await page.getByLabel('Password').fill('guess');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'wrong name or password' }).waitFor();
  await shoot(page, 'signin-failed');

  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('link', { name: 'Overview' }).waitFor();
  const feed = await page.evaluate(async () => (await fetch('/admin/api/security-events?user=ops')).json());
  assert.ok(
    feed.records.some((r) => r.action === 'admin_signin' && r.decision === 'deny'),
    JSON.stringify(feed),
  );

  // The connection count follows clients (opened from a second page, as browsers would).
  const connections = page.locator('[data-metric="Connections"]');
  await page.waitForFunction(() => document.querySelector('[data-metric="Connections"]')?.textContent === '0');
  const clients = await context.newPage();
  await clients.goto(`${baseUrl}/up`);
  await clients.evaluate(({ key }) => {
    window.sockets = [0, 1, 2].map(() => new WebSocket(`ws://${location.host}/app/${key}?protocol=7`));
  }, { key: APP.key });
  await page.waitForFunction(
    () => document.querySelector('[data-metric="Connections"]')?.textContent === '3',
    null,
    { timeout: 10_000 },
  );
  assert.equal(await page.locator(`[data-app-connections="${APP.id}"]`).innerText(), '3');
  await shoot(page, 'overview');
  await clients.evaluate(() => window.sockets.forEach((s) => s.close()));
  await page.waitForFunction(
    () => document.querySelector('[data-metric="Connections"]')?.textContent === '0',
    null,
    { timeout: 10_000 },
  );
  assert.equal(await connections.innerText(), '0');

  // A refused subscription (a forged signature) shows up in the security feed, as does the
  // refused sign-in.
  await clients.evaluate(({ key }) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/app/${key}?protocol=7`);
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      if (msg.event === 'pusher:connection_established') {
        ws.send(JSON.stringify({
          event: 'pusher:subscribe',
          data: { channel: 'private-vault', auth: `${key}:${'0'.repeat(64)}` },
        }));
      } else if (msg.event === 'pusher:subscription_error') {
        resolve();
      }
    };
  }), { key: APP.key });
  await page.getByRole('link', { name: 'Security' }).click();
  const feedRows = page.locator('table.records tbody tr');
  await feedRows.filter({ hasText: 'private-vault' }).filter({ hasText: 'deny' }).waitFor({ timeout: 10_000 });
  await feedRows.filter({ hasText: 'admin_signin' }).first().waitFor();
  await shoot(page, 'security');

  // Audit: search by channel, allowed decisions included.
  await page.getByRole('link', { name: 'Audit' }).click();
  await page.getByLabel('Channel').fill('private-vault');
  await page.getByLabel('Channel').press('Enter');
  await page.getByLabel('Channel').blur();
  // Once the filtered page is in, every row is about that channel.
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('table.records tbody tr')];
    return rows.length > 0 && rows.every((r) => r.textContent.includes('private-vault'));
  }, null, { timeout: 10_000 });
  const auditText = await page.locator('table.records tbody').innerText();
  assert.match(auditText, /subscribe/);
  await shoot(page, 'audit');

  // Channels: a public and a presence channel with their counts, the presence members, and a
  // test event that reaches the subscriber.
  const socketId = await clients.evaluate(({ key }) => new Promise((resolve) => {
    window.received = [];
    const ws = new WebSocket(`ws://${location.host}/app/${key}?protocol=7`);
    window.member = ws;
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      window.received.push(msg);
      if (msg.event === 'pusher:connection_established') resolve(JSON.parse(msg.data).socket_id);
    };
  }), { key: APP.key });
  const channelData = JSON.stringify({ user_id: 'alice', user_info: { name: 'Alice' } });
  const signature = createHmac('sha256', APP.secret)
    .update(`${socketId}:presence-room:${channelData}`)
    .digest('hex');
  await clients.evaluate(({ key, signature, channelData }) => {
    for (const [channel, extra] of [['news', {}], ['presence-room', { auth: `${key}:${signature}`, channel_data: channelData }]]) {
      window.member.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel, ...extra } }));
    }
  }, { key: APP.key, signature, channelData });
  await page.getByRole('link', { name: 'Channels' }).click();
  const room = page.locator('tr[data-channel="presence-room"]');
  await room.waitFor({ timeout: 10_000 });
  assert.match(await room.innerText(), /presence-room\s+1\s+1/);
  await room.getByRole('button', { name: 'Members' }).click();
  await page.locator('section.members li', { hasText: 'alice' }).waitFor();
  await page.locator('tr[data-channel="news"]').getByRole('button', { name: 'Send event' }).click();
  assert.equal(await page.getByLabel('Channel').inputValue(), 'news');
  await page.getByLabel('Event').fill('dashboard-note');
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  await page.getByRole('status').filter({ hasText: 'Sent.' }).waitFor();
  await clients.waitForFunction(() => window.received.some((m) => m.event === 'dashboard-note' && m.channel === 'news'));
  await shoot(page, 'channels');

  // Disputes: the backend marks escrow 42 disputed; the admin opens its chat and sees the
  // buyer's message arrive live.
  await appApi('PUT', `/apps/${APP.id}/resources/escrow/42`, {
    participants: ['buyer-1', 'seller-9'],
    tenant: 'acme',
    attributes: { status: 'DISPUTED' },
  });
  // What was said before the admin looks is kept by the channel's history and shown first.
  const chat = 'private-tenant.acme.escrow.42.chat';
  await appApi('POST', `/apps/${APP.id}/events`, {
    name: 'message', channel: chat, data: JSON.stringify({ text: 'the parcel never came' }),
  });
  await page.getByRole('link', { name: 'Disputes' }).click();
  await page.getByRole('button', { name: 'Open tenant.acme.escrow.42.chat' }).click();
  await page.locator('[data-chat-status]').filter({ hasText: 'Live' }).waitFor({ timeout: 10_000 });
  await page.locator('ol.messages li.earlier', { hasText: 'the parcel never came' }).waitFor();
  const buyerSocket = await clients.evaluate(({ key }) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${location.host}/app/${key}?protocol=7`);
    window.buyer = ws;
    window.buyerEvents = [];
    ws.onmessage = (m) => {
      const msg = JSON.parse(m.data);
      window.buyerEvents.push(msg.event);
      if (msg.event === 'pusher:connection_established') resolve(JSON.parse(msg.data).socket_id);
    };
  }), { key: APP.key });
  const userData = JSON.stringify({ id: 'buyer-1', user_info: { tenant_id: 'acme' } });
  const sign = (text) => `${APP.key}:${createHmac('sha256', APP.secret).update(text).digest('hex')}`;
  await clients.evaluate(({ userData, signinAuth, chat, channelAuth }) => {
    window.buyer.send(JSON.stringify({ event: 'pusher:signin', data: { auth: signinAuth, user_data: userData } }));
    window.buyer.send(JSON.stringify({ event: 'pusher:subscribe', data: { channel: chat, auth: channelAuth } }));
  }, {
    userData,
    signinAuth: sign(`${buyerSocket}::user::${userData}`),
    chat,
    channelAuth: sign(`${buyerSocket}:${chat}`),
  });
  await clients.waitForFunction(() => window.buyerEvents.includes('pusher_internal:subscription_succeeded'));
  await clients.evaluate(({ chat }) => {
    window.buyer.send(JSON.stringify({ event: 'client-message', channel: chat, data: { text: 'where is my parcel?' } }));
  }, { chat });
  await page.locator('ol.messages li', { hasText: 'where is my parcel?' }).waitFor({ timeout: 10_000 });
  assert.match(await page.locator('ol.messages').innerText(), /client-message/);
  // The admin replies into the chat: the buyer receives it, and the chat shows it.
  await page.getByLabel('Reply as admin').fill('we are looking into it');
  await page.getByRole('button', { name: 'Post', exact: true }).click();
  await page.getByRole('status').filter({ hasText: 'Posted.' }).waitFor();
  await page.locator('ol.messages li', { hasText: 'we are looking into it' }).waitFor({ timeout: 10_000 });
  await clients.waitForFunction(() => window.buyerEvents.includes('admin-message'));
  // Audited as metadata: the publish names the event and its size, the admin call names the
  // admin, and neither holds the text.
  const audited = await page.waitForFunction(async (chat) => {
    const page = await (await fetch(`/admin/api/audit?channel=${encodeURIComponent(chat)}`)).json();
    return page.records.some((r) => r.action === 'publish' && /admin-message/.test(r.reason)) && page;
  }, chat, { timeout: 10_000 });
  const byAdmin = await page.evaluate(async () => (await fetch('/admin/api/audit?user=ops')).json());
  assert.ok(byAdmin.records.some((r) => r.action === 'admin_api' && /events/.test(r.reason)), JSON.stringify(byAdmin));
  for (const records of [await audited.jsonValue(), byAdmin]) {
    assert.ok(!JSON.stringify(records).includes('we are looking into it'), JSON.stringify(records));
  }
  await shoot(page, 'disputes');
  // The overview says what the app keeps: the chat's three events in its history.
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator(`[data-app-kept="${APP.id}"]`).filter({ hasText: 'history: 3 events' }).waitFor({ timeout: 10_000 });

  // Apps: limits shown, the secret masked.
  await page.getByRole('link', { name: 'Apps' }).click();
  await page.getByRole('heading', { name: APP.id }).waitFor({ timeout: 10_000 });
  const text = await page.locator('section.app').innerText();
  assert.ok(!text.includes(APP.secret), text);
  assert.match(text, /ui•+et|u•+t/);
  await shoot(page, 'apps');

  // Reloading keeps the session and the page; signing out ends it.
  await page.reload();
  await page.getByRole('heading', { name: APP.id }).waitFor();
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('form.signin').waitFor();

  assert.deepEqual(problems, [], 'the page logged errors');
  await clients.close();
  await page.close();
});

test('a cluster node names itself and counts the whole cluster', { timeout: 60_000 }, async () => {
  const redis = await startRedis();
  try {
    // Another host, so the browser keeps this node's session cookie apart.
    const node = `http://${await startBroker({ name: 'node', host: '127.0.0.2', cluster: `redis_url = "${redis.url}"` })}`;
    const page = await context.newPage();
    await page.goto(`${node}/admin/`);
    await page.locator('form.signin').waitFor({ timeout: 30_000 });
    await page.getByLabel('Name').fill('ops');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: 'Overview' }).waitFor();
    const line = page.locator('[data-cluster]');
    await line.waitFor({ timeout: 10_000 });
    assert.match(await line.innerText(), /^Node [0-9a-f]{16} of a cluster of 1 node, in sync with Redis\./);

    const clients = await context.newPage();
    await clients.goto(`${node}/up`);
    await clients.evaluate(({ key }) => {
      window.sockets = [0, 1].map(() => new WebSocket(`ws://${location.host}/app/${key}?protocol=7`));
    }, { key: APP.key });
    // This node's count at once; the cluster's once a heartbeat has carried it.
    const cell = page.locator(`[data-app-connections="${APP.id}"]`);
    await page.waitForFunction(
      (id) => document.querySelector(`[data-app-connections="${id}"]`)?.textContent.trim() === '2 (2 in the cluster)',
      APP.id,
      { timeout: 15_000 },
    );
    assert.equal((await cell.innerText()).trim(), '2 (2 in the cluster)');
    await shoot(page, 'overview-cluster');
    await clients.close();
    await page.close();
  } finally {
    await redis.stop();
  }
});

test('the dashboard over https: a Secure session cookie, the live overview and wss clients', { timeout: 120_000 }, async () => {
  const certs = path.join(scratch, 'certs');
  execFileSync(path.join(ROOT, 'scripts/test-certs'), [certs]);
  const address = await startBroker({ name: 'tls', tls: certs });
  const base = `https://${address}`;
  // The certificate is signed by the test CA, which this browser does not know.
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  try {
    const tlsContext = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 800 } });
    const page = await tlsContext.newPage();
    const problems = [];
    page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
    await page.goto(`${base}/admin/`);
    await page.locator('form.signin').waitFor({ timeout: 30_000 });
    await page.getByLabel('Name').fill('ops');
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('link', { name: 'Overview' }).waitFor();
    const session = (await tlsContext.cookies(`${base}/admin/`)).find((c) => c.name === 'ringcast_admin');
    assert.ok(session, 'a session cookie for /admin');
    assert.equal(session.secure, true, 'the session cookie is Secure under TLS');
    assert.equal(session.httpOnly, true);

    // The live overview (server-sent events over TLS) follows clients on wss://.
    await page.waitForFunction(() => document.querySelector('[data-metric="Connections"]')?.textContent === '0');
    const clients = await tlsContext.newPage();
    await clients.goto(`${base}/up`);
    await clients.evaluate(({ key }) => {
      window.sockets = [0, 1].map(() => new WebSocket(`wss://${location.host}/app/${key}?protocol=7`));
    }, { key: APP.key });
    await page.waitForFunction(
      () => document.querySelector('[data-metric="Connections"]')?.textContent === '2',
      null,
      { timeout: 10_000 },
    );
    await shoot(page, 'overview-tls');
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
