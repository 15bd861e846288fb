// The dashboard over the API's TLS in headless Chromium: the page, its login and its live event stream all
// over HTTPS, with the test's certificate trusted by its key alone (a browser that met another would fail).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startClient, startServer, tmpDir, API_AUTH } from '../harness/procs.js';
import { browserPage, NO_CHROMIUM } from './helpers/browser.js';
import { makeCert, spkiHash } from './helpers/tls-cert.js';

test(
  'dashboard over HTTPS in headless Chromium: log in, a client appears live, HSTS on the page',
  { skip: NO_CHROMIUM },
  async (t) => {
    const { cert, key } = makeCert(tmpDir(t), 'api');
    const server = await startServer(t, ['--api-cert-file', cert, '--api-key-file', key]);
    await server.proc.waitFor(/API listening on https:/);
    const { page } = await browserPage(t, { width: 1280, height: 720 }, 10_000, [
      `--ignore-certificate-errors-spki-list=${spkiHash(cert)}`,
    ]);
    const loaded = await page.goto(`https://127.0.0.1:${server.apiPort}/`);
    assert.equal(loaded!.headers()['strict-transport-security'], 'max-age=31536000');
    const [user, password] = API_AUTH.split(':');
    await page.fill('input[name=username]', user!);
    await page.fill('input[name=password]', password!);
    await page.click('button[type=submit]');
    await page.waitForSelector('#live:has-text("live")');
    startClient(t, `127.0.0.1:${server.port}`, ['--id', 'tls-dash-client']);
    await page.waitForSelector('tr[data-client="tls-dash-client"]:has-text("connected")');
  },
);
