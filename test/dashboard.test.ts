import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { cleanup, startClient, startServer, API_AUTH } from '../harness/procs.js';
import { browserPage, NO_CHROMIUM, screenshot } from './helpers/browser.js';

test(
  'dashboard in headless Chromium: log in, a client appears live, a tunnel is created and deleted',
  { skip: NO_CHROMIUM },
  async (t) => {
    const web = createServer((_req, res) => res.end('behind the NAT'));
    await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
    cleanup(t, () => new Promise((r) => web.close(() => r(undefined))));
    const server = await startServer(t);
    const { page, consoleErrors } = await browserPage(t, { width: 1280, height: 720 }, 10_000);
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
    const client = startClient(
      t,
      `127.0.0.1:${server.port}`,
      ['--id', 'dash-client', '--name', 'Edge box', '--tags', 'edge,eu', '--watchdog-integration'],
      {},
      {},
    );
    await page.waitForSelector('tr[data-client="dash-client"]:has-text("connected")');
    assert.match(
      (await page.textContent('tr[data-client="dash-client"]')) ?? '',
      /Edge box.*connected.*edge.*eu.*armed \(state\.json\)/s,
    );

    await page.click('tr[data-client="dash-client"]');
    await page.fill('#tunnel-form input[name=remote]', `127.0.0.1:${(web.address() as AddressInfo).port}`);
    await page.click('#tunnel-form button[type=submit]');
    await page.waitForSelector('#tunnels tr:has-text("127.0.0.1:")');
    // No server address asked for: on loopback, and the dashboard says so and how to publish it.
    const local = (await page.textContent('#tunnels tr td:first-child'))!.match(/^127\.0\.0\.1:(\d+)$/)![1];
    assert.match(
      (await page.textContent('#tunnel-note')) ?? '',
      /on this machine only: .*ask for local=0\.0\.0\.0:PORT \(with an acl\)/,
    );
    assert.equal(await (await fetch(`http://127.0.0.1:${local}/`)).text(), 'behind the NAT');
    await page.waitForSelector('tr[data-client="dash-client"] td:last-child:has-text("1")');

    await screenshot(t, page, 'dashboard.png');

    await page.click('#tunnels button:has-text("Delete")');
    await page.waitForSelector('#tunnels td:has-text("No tunnels.")');
    await client.stop();
    await page.waitForSelector('tr[data-client="dash-client"]:has-text("disconnected")');
    assert.deepEqual(
      consoleErrors.filter((e) => /Content Security Policy/i.test(e)),
      [],
    );

    // Log out revokes the token on the server: it no longer opens the API.
    const token = await page.evaluate(() => sessionStorage.getItem('rport-token'));
    await page.click('#logout');
    await page.waitForSelector('#login-form', { state: 'visible' });
    assert.equal(
      (
        await fetch(`http://127.0.0.1:${server.apiPort}/api/v1/status`, {
          headers: { authorization: `Bearer ${token}` },
        })
      ).status,
      401,
    );
  },
);
