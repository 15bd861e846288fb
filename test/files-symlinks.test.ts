import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { withTimeout } from '../src/timeout.js';
import { cleanup, run, serverArgs, startServer, tmpDir, victim } from '../harness/procs.js';

const ROOT = process.getuid?.() === 0;
const POSIX = process.platform !== 'win32';

/** rportd with this data_dir (and flags): it must exit with `code` and say `line`, without a stack trace. */
async function refused(
  t: Parameters<typeof tmpDir>[0],
  dataDir: string,
  code: number,
  line: RegExp,
  extra: string[] = [],
): Promise<void> {
  const { args } = await serverArgs(t, ['--data-dir', dataDir, ...extra]);
  const p = run('rportd', args);
  cleanup(t, () => p.stop());
  const exit = await withTimeout(p.exited, 20_000, 'rportd to refuse to start');
  assert.equal(exit.code, code, p.output);
  assert.ok(
    p.lines.some((l) => line.test(l)),
    `no line matching ${line}:\n${p.output}`,
  );
  assert.ok(!/^\s+at /m.test(p.output), `a stack trace:\n${p.output}`);
}

test(
  'rportd refuses a data_dir its group or others can write, or another user owns: one line naming the folder, the owner and the fix',
  { skip: !POSIX && 'modes' },
  async (t) => {
    const base = tmpDir(t);
    for (const [name, mode, what, fix] of [
      ['group', 0o770, 'its group', 'chmod g-w '],
      ['world', 0o777, 'every user', 'chmod go-w '],
      ['sticky', 0o1777, 'every user', 'use a folder of its own'],
    ] as const) {
      const dir = join(base, name);
      mkdirSync(dir);
      chmodSync(dir, mode);
      await refused(
        t,
        dir,
        2,
        new RegExp(
          `--data-dir "${dir}": ${dir} is writable by ${what} \\(mode ${mode.toString(8).padStart(4, '0')}, owner \\S+\\): ${fix.startsWith('chmod') ? fix + dir : fix}$`,
        ),
      );
    }
    if (ROOT) {
      const theirs = join(base, 'theirs');
      mkdirSync(theirs, { mode: 0o700 });
      chownSync(theirs, 65534, 65534);
      await refused(
        t,
        theirs,
        2,
        new RegExp(
          `--data-dir "${theirs}": ${theirs} belongs to \\S+, not to \\S+ \\(this process\\), and \\S+ could replace files in it: run this as \\S+ `,
        ),
      );
    }
    // The packaged layout: a folder of rportd's own user, readable by others, is fine.
    const ok = join(base, 'ok');
    mkdirSync(ok);
    chmodSync(ok, 0o755);
    await startServer(t, ['--data-dir', ok]);
  },
);

test(
  'symlinks planted in data_dir (node-id, the database and its -wal and -shm, the host key) are refused, their targets untouched',
  { skip: !POSIX && 'symlinks' },
  async (t) => {
    for (const name of ['node-id', 'rportd.db', 'rportd.db-wal', 'rportd.db-shm', 'rportd-host-key']) {
      const dir = tmpDir(t);
      const v = victim(tmpDir(t), 0o644);
      symlinkSync(v.path, join(dir, name));
      try {
        await refused(
          t,
          dir,
          1,
          new RegExp(
            `${join(dir, name).replaceAll('.', '\\.')} is a symbolic link, which rport does not follow among its own files .*: remove it`,
          ),
        );
      } finally {
        v.untouched();
      }
    }
  },
);

test(
  'log_file in a sticky world-writable folder (like /tmp): a planted symlink is not followed',
  { skip: !POSIX && 'symlinks' },
  async (t) => {
    const shared = tmpDir(t);
    chmodSync(shared, 0o1777);
    const v = victim(tmpDir(t), 0o644);
    const log = join(shared, 'rportd.log');
    symlinkSync(v.path, log);
    try {
      await refused(
        t,
        tmpDir(t),
        2,
        new RegExp(
          `${log.replaceAll('.', '\\.')} is a symlink, not followed because ${shared} is writable by every user`,
        ),
        ['--log-file', log],
      );
    } finally {
      v.untouched();
    }
  },
);
