import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanup, startClient, startServer, API_AUTH } from './helpers/procs.js';

const CHROMIUM = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
const ARTIFACTS = fileURLToPath(new URL('../../test-artifacts/', import.meta.url));

test('dashboard in headless Chromium: log in, a client appears live, a tunnel is created and deleted', { skip: !CHROMIUM && 'Chromium is not installed (apt-get install chromium)' }, async (t) => {
  const { chromium } = await import('playwright-core');
  const web = createServer((_req, res) => res.end('behind the NAT'));
  await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
  cleanup(t, () => new Promise((r) => web.close(() => r(undefined))));
  const server = await startServer(t);
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanup(t, () => browser.close());
  const page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.setDefaultTimeout(10_000);
  // The CSP forbids inline script and style: a violation shows up as a console error.
  const consoleErrors: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  const loaded = await page.goto(`http://127.0.0.1:${server.apiPort}/`);
  assert.match(loaded!.headers()['content-security-policy'] ?? '', /frame-ancestors 'none'/);
  assert.equal(loaded!.headers()['x-frame-options'], 'DENY');
  const [user, password] = API_AUTH.split(':');
  await page.fill('input[name=username]', user!);
  await page.fill('input[name=password]', 'wrong');
  await page.click('button[type=submit]');
  await page.waitForSelector('#login-error:has-text("wrong username or password")');
  await page.fill('input[name=password]', password!);
  await page.click('button[type=submit]');
  await page.waitForSelector('#live:has-text("live")');
  assert.equal(await page.isVisible('#no-clients'), true);

  // The client connects after the page is open: it appears without a reload.
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'dash-client', '--name', 'Edge box', '--tags', 'edge,eu', '--watchdog-integration'], {}, {});
  await page.waitForSelector('tr[data-client="dash-client"]:has-text("connected")');
  assert.match(await page.textContent('tr[data-client="dash-client"]') ?? '', /Edge box.*connected.*edge.*eu.*armed \(state\.json\)/s);

  await page.click('tr[data-client="dash-client"]');
  await page.fill('#tunnel-form input[name=remote]', `127.0.0.1:${(web.address() as AddressInfo).port}`);
  await page.click('#tunnel-form button[type=submit]');
  await page.waitForSelector('#tunnels tr:has-text("127.0.0.1:")');
  const local = (await page.textContent('#tunnels tr td:first-child'))!.match(/^0\.0\.0\.0:(\d+)$/)![1];
  assert.equal(await (await fetch(`http://127.0.0.1:${local}/`)).text(), 'behind the NAT');
  await page.waitForSelector('tr[data-client="dash-client"] td:last-child:has-text("1")');

  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: `${ARTIFACTS}dashboard.png`, fullPage: true });
  t.diagnostic(`screenshot: ${ARTIFACTS}dashboard.png`);

  await page.click('#tunnels button:has-text("Delete")');
  await page.waitForSelector('#tunnels td:has-text("No tunnels.")');
  await client.stop();
  await page.waitForSelector('tr[data-client="dash-client"]:has-text("disconnected")');
  assert.deepEqual(consoleErrors.filter((e) => /Content Security Policy/i.test(e)), []);

  // Log out revokes the token on the server: it no longer opens the API.
  const token = await page.evaluate(() => sessionStorage.getItem('rport-token'));
  await page.click('#logout');
  await page.waitForSelector('#login-form', { state: 'visible' });
  assert.equal((await fetch(`http://127.0.0.1:${server.apiPort}/api/v1/status`, { headers: { authorization: `Bearer ${token}` } })).status, 401);
});
