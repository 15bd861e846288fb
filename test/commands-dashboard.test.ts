import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startClient, startServer, tmpDir, writeFile, API_AUTH } from '../harness/procs.js';
import { browserPage, NO_CHROMIUM, screenshot } from './helpers/browser.js';

test(
  'dashboard in headless Chromium: run a command on one client and on two, watch the output arrive, see the history',
  { skip: NO_CHROMIUM },
  async (t) => {
    const server = await startServer(t);
    // This client lets /bin/sh run anything: the test needs output that arrives in two steps.
    const conf = writeFile(
      tmpDir(t),
      'rport.conf',
      "[remote-commands]\nallow = ['^/bin/sh ', '^/usr/bin/']\ndeny = []\n",
    );
    const a = startClient(t, `127.0.0.1:${server.port}`, ['-c', conf, '--id', 'box-a', '--name', 'Box A']);
    const b = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'box-b', '--name', 'Box B']);
    await Promise.all([a.waitFor(/connected to/), b.waitFor(/connected to/)]);

    const { page, consoleErrors } = await browserPage(t, { width: 1280, height: 1000 }, 15_000);
    await page.goto(`http://127.0.0.1:${server.apiPort}/`);
    const [user, password] = API_AUTH.split(':');
    await page.fill('input[name=username]', user!);
    await page.fill('input[name=password]', password!);
    await page.click('#login-form button[type=submit]');
    await page.waitForSelector('#cmd-clients option[value="box-b"]', { state: 'attached' });

    // One client: the first line shows while the command still runs, then the end.
    await page.selectOption('#cmd-clients', ['box-a']);
    await page.fill('#cmd-command', "/bin/sh -c 'echo first; sleep 2; echo second'");
    await page.click('#cmd-form button[type=submit]');
    await page.waitForSelector('.run[data-status="running"] pre.stdout:has-text("first")');
    await page.waitForSelector('.run[data-status="successful"] pre.stdout:has-text("second")');
    await page.waitForSelector('#cmd-history tr:has-text("echo first")');
    assert.match((await page.textContent('#cmd-history tr:first-child')) ?? '', /Box A.*successful.*admin/s);

    // Two clients at once: box-b's own filter refuses /bin/sh, box-a runs it.
    await page.selectOption('#cmd-clients', ['box-a', 'box-b']);
    await page.fill('#cmd-command', '/bin/sh -c uname');
    await page.click('#cmd-form button[type=submit]');
    await page.waitForSelector('.run[data-client="box-a"][data-status="successful"] pre.stdout:has-text("Linux")');
    await page.waitForSelector('.run[data-client="box-b"][data-status="failed"]:has-text("command is not allowed")');

    await screenshot(t, page, 'dashboard-commands.png');
    assert.deepEqual(
      consoleErrors.filter((e) => /Content Security Policy/i.test(e)),
      [],
    );
  },
);
