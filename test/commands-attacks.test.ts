import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { CommandsConfig } from '../src/config/client-config.js';
import { RemoteError } from '../src/transport/control-channel.js';
import { METHOD } from '../src/transport/protocol.js';
import { commandsOf, hostileServer } from './helpers/client-jobs.js';
import { eventually, tmpDir } from '../harness/procs.js';

type Outcome = RegExp | 'ran';

/**
 * The commands of issue 21's finding 6 and their kin, from a hostile server to a real ClientJobs: each is
 * refused (the reason matched) or runs, and in no case does a program outside the allowed folders run (it
 * would create the marker). The table in docs/commands.md is this one.
 */
test('the command filter: expansions, dot segments and program runners from a hostile server never run a program outside /usr/bin', async (t) => {
  const dir = tmpDir(t);
  const X = join(dir, 'pwned');
  const defaults = commandsOf(dir, '');
  // RPort's own deny list, as a migrated rport.conf may spell it out: without a shell its gaps are closed too.
  const rportDeny = commandsOf(dir, "[remote-commands]\ndeny = ['(\\||<|>|;|,|\\n|&)']\n");
  const rportShell = commandsOf(dir, "[remote-commands]\ndeny = ['(\\||<|>|;|,|\\n|&)']\nuse_shell = true\n");
  const shellDefaults = commandsOf(dir, '[remote-commands]\nuse_shell = true\n');
  const denyBin = commandsOf(dir, "[remote-commands]\norder = ['deny','allow']\nallow = []\ndeny = ['^/bin/']\n");
  const cases: Array<[string, CommandsConfig, Record<string, unknown>, Outcome, boolean?]> = [
    ['$(...)', defaults, { command: `/usr/bin/true $(/bin/touch ${X})` }, /matches the deny pattern/],
    ['backticks', defaults, { command: `/usr/bin/true \`/bin/touch ${X}\`` }, /matches the deny pattern/],
    ['.. segments', defaults, { command: `/usr/bin/../../bin/touch ${X}` }, /has a '.' or '..' segment/],
    [
      'env runs a shell',
      defaults,
      { command: `/usr/bin/env /bin/sh -c '/bin/touch ${X}'` },
      /matches the deny pattern/,
    ],
    [
      'bash ${IFS}',
      defaults,
      { command: `/usr/bin/env\${IFS}/bin/touch\${IFS}${X}`, interpreter: 'bash' },
      /matches the deny pattern/,
    ],
    [
      'an interpreter named by the server',
      defaults,
      { command: `/usr/bin/touch ${X}`, interpreter: 'sh' },
      /interpreter "sh" refused: commands run without a shell/,
    ],
    ['xargs runs its argument', defaults, { command: `/usr/bin/xargs /bin/touch ${X}` }, /matches the deny pattern/],
    [
      'find -exec',
      defaults,
      { command: `/usr/bin/find ${dir} -maxdepth 0 -exec /bin/touch ${X} {} +` },
      /matches the deny pattern/,
    ],
    ['a shell in /usr/bin', defaults, { command: `/usr/bin/bash -c /bin/touch` }, /matches the deny pattern/],
    ['a quoted program past a deny pattern', denyBin, { command: `"/bin/touch" ${X}` }, /is quoted/],
    [
      'RPort deny, no shell: $(...) is a plain argument',
      rportDeny,
      { command: `/usr/bin/true $(/bin/touch ${X})` },
      'ran',
    ],
    [
      'RPort deny, no shell: backticks are a plain argument',
      rportDeny,
      { command: `/usr/bin/true \`/bin/touch ${X}\`` },
      'ran',
    ],
    [
      'RPort deny, no shell: ${IFS} is plain text (no such program)',
      rportDeny,
      { command: `/usr/bin/true\${IFS}/bin/touch\${IFS}${X}` },
      /cannot start .* ENOENT/,
    ],
    [
      'RPort deny, no shell: .. segments',
      rportDeny,
      { command: `/usr/bin/../../bin/touch ${X}` },
      /has a '.' or '..' segment/,
    ],
    [
      'use_shell, defaults: $(...)',
      shellDefaults,
      { command: `/usr/bin/true $(/bin/touch ${X})` },
      /matches the deny pattern/,
    ],
    [
      'use_shell, defaults: .. segments',
      shellDefaults,
      { command: `/usr/bin/../../bin/touch ${X}` },
      /has a '.' or '..' segment/,
    ],
    // What use_shell = true with RPort's deny list means: RPort's weakness, the reason it is not the default.
    ['use_shell, RPort deny: $(...) runs', rportShell, { command: `/usr/bin/true $(/bin/touch ${X})` }, 'ran', true],
  ];
  for (const [name, cfg, over, outcome, marker = false] of cases) {
    const server = await hostileServer(t, cfg);
    const jid = `j${Math.random().toString(36).slice(2)}`;
    const ask = server.request(
      METHOD.jobRun,
      { jid, command: '/usr/bin/true', is_script: false, interpreter: '', cwd: '', timeout_sec: 10, ...over },
      10_000,
    );
    if (outcome === 'ran') {
      await ask;
      const done = await eventually(() => server.ended.get(jid), 15_000, `${name}: the job to end`);
      assert.equal(done.status, 'successful', `${name}: ${JSON.stringify(done)}`);
    } else {
      await assert.rejects(ask, (err: Error) => err instanceof RemoteError && outcome.test(err.message), name);
    }
    assert.equal(existsSync(X), marker, `${name}: the marker ${marker ? 'was' : 'was not'} created`);
    rmSync(X, { force: true });
  }
});

/** pids of running processes whose command line is exactly `argv`. */
function processesRunning(argv: string[]): number[] {
  const want = argv.join('\0') + '\0';
  return readdirSync('/proc')
    .filter((p) => /^\d+$/.test(p))
    .filter((p) => {
      try {
        return (
          readFileSync(`/proc/${p}/cmdline`, 'utf8') === want &&
          !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${p}/stat`, 'utf8'))
        );
      } catch {
        return false;
      }
    })
    .map(Number);
}

test("80 jobs requested at once: the client's limit of 32 holds (checked before the start is awaited)", async (t) => {
  const dir = tmpDir(t);
  const server = await hostileServer(t, commandsOf(dir, ''));
  // A duration no other test uses, so that the processes counted are these.
  const argv = ['/usr/bin/sleep', '47.25'];
  const asks = Array.from({ length: 80 }, (_, i) =>
    server.request(
      METHOD.jobRun,
      { jid: `flood-${i}`, command: argv.join(' '), is_script: false, interpreter: '', cwd: '', timeout_sec: 60 },
      30_000,
    ),
  );
  const settled = await Promise.allSettled(asks);
  const started = settled.filter((s) => s.status === 'fulfilled').length;
  const refused = settled.filter(
    (s) => s.status === 'rejected' && /32 jobs are running already/.test(String(s.reason)),
  ).length;
  const running = processesRunning(argv).length;
  assert.equal(started, 32, `jobs started: ${started}`);
  assert.equal(refused, 48, `jobs refused for the limit: ${refused}`);
  assert.ok(running <= 32, `${running} processes run`);
});
