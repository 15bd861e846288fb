import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';

/**
 * A private root for tests that install into "/" (dpkg -i, adduser, systemctl enable): a command runs in
 * new mount and PID namespaces whose "/" is an overlay of the host's, every write going to a tmpfs layer
 * that goes away with the namespace. The host's file system is never written:
 * - "/" and every directory mounted below it (/home, /boot, ... on other machines) get an overlay of
 *   their own; a file mounted over another (a container's /etc/hosts) is bound read-only;
 * - /tmp and /run are fresh tmpfs (so no host service manager or D-Bus is reachable through /run), /proc
 *   is the new PID namespace's; /dev and /sys are the host's (the systemd harness makes a cgroup there and
 *   removes it);
 * - pivot_root then drops the host's tree from the namespace; the command runs as PID 1's child, and when
 *   it ends (or the caller is killed: unshare --kill-child) every process left in the namespace ends too.
 */

/** Not overlaid: the kernel's, and the two that get a fresh tmpfs. */
const SPECIAL = ['/proc', '/sys', '/dev', '/run', '/tmp'];
/** Written in the private /run: proof, for the command, that it runs in a private root. */
const MARK = '/run/rport-private-root';
const MARK_ENV = 'RPORT_PRIVATE_ROOT';

const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
const under = (p: string, dir: string) => p === dir || p.startsWith(`${dir}/`);

/** Every mount point below "/" on this machine except the special ones, parents first. */
function submounts(): string[] {
  const points = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' ')[4]!.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  const kept = [...new Set(points)].filter((p) => p !== '/' && !SPECIAL.some((d) => under(p, d)));
  return kept.sort((a, b) => a.split('/').length - b.split('/').length);
}

/** The shell script that builds the private root in the new namespaces, then runs "$@". */
function script(token: string): string {
  const L = '/run/private-root';
  const lines = [
    'set -eu',
    // Our own /run (the host's stays untouched): the layers and the new root's mount point live there.
    'mount -t tmpfs -o mode=700 tmpfs /run',
    `mkdir -p ${L}/root ${L}/layers`,
    `overlay() { mkdir -p ${L}/layers/$2/u ${L}/layers/$2/w; mount -t overlay overlay -o "lowerdir=$1,upperdir=${L}/layers/$2/u,workdir=${L}/layers/$2/w" "$3"; }`,
    `overlay / 0 ${L}/root`,
  ];
  submounts().forEach((m, i) => {
    const target = q(`${L}/root${m}`);
    // A directory gets a writable overlay; a file (or a file system overlayfs cannot stack on) is read-only.
    lines.push(
      statSync(m).isDirectory()
        ? `overlay ${q(m)} ${i + 1} ${target} 2>/dev/null || mount --bind -o ro ${q(m)} ${target}`
        : `mount --bind -o ro ${q(m)} ${target}`,
    );
  });
  lines.push(
    `cd ${L}/root`,
    'mount -t proc proc proc',
    'mount --rbind /sys sys',
    'mount --rbind /dev dev',
    'mount -t tmpfs -o mode=1777 tmpfs tmp',
    'mount -t tmpfs -o mode=755 tmpfs run',
    `echo ${token} > .${MARK}`,
    'mkdir -p .old-root',
    'pivot_root . .old-root',
    'cd /',
    'umount -l /.old-root',
    'rmdir /.old-root',
    // Not the last command (bash would exec it): bash stays PID 1 of the namespace and reaps its orphans.
    '"$@"',
    'exit $?',
  );
  return lines.join('\n');
}

/** Why a private root cannot be made here, or undefined when it can (tried once with /bin/true). */
/** unshare's arguments: new mount and PID namespaces whose bash makes the private root, then runs argv. */
function unshareArgs(token: string, argv: string[]): string[] {
  const ns = ['--mount', '--pid', '--fork', '--propagation', 'private', '--kill-child'];
  return [...ns, '--', 'bash', '-c', script(token), 'private-root', ...argv];
}

export function privateRootUnavailable(): string | undefined {
  if (process.platform !== 'linux') return 'a private root needs Linux namespaces';
  if (process.getuid?.() !== 0) return 'a private root needs root (mount and PID namespaces, overlay mounts)';
  for (const tool of ['/usr/bin/unshare', '/usr/sbin/pivot_root'])
    if (!existsSync(tool)) return `${tool} is missing (util-linux)`;
  const r = spawnSync('unshare', unshareArgs('probe', ['true']), { encoding: 'utf8', timeout: 30_000 });
  return r.status === 0
    ? undefined
    : `cannot make a private root here: ${(r.stderr || r.error?.message || `exit ${r.status}`).trim().split('\n')[0]}`;
}

/** Whether this process runs in a private root made by runInPrivateRoot (its mark in the private /run). */
export function inPrivateRoot(): boolean {
  const token = process.env[MARK_ENV];
  return !!token && existsSync(MARK) && readFileSync(MARK, 'utf8').trim() === token;
}

/**
 * Runs argv in a new private root; resolves with its exit code (null when killed) and its output
 * (stdout and stderr interleaved). Killed at `timeoutMs`, with everything in its namespace.
 * NODE_TEST_CONTEXT is left out of its environment: a test file run there reports on its own stdout,
 * not over the runner's channel of the test that started it.
 */
export function runInPrivateRoot(
  argv: string[],
  opts: { timeoutMs: number; env?: NodeJS.ProcessEnv },
): Promise<{ code: number | null; output: string }> {
  const token = randomBytes(8).toString('hex');
  const { NODE_TEST_CONTEXT: _c, ...env } = opts.env ?? process.env;
  const child = spawn('unshare', unshareArgs(token, argv), {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...env, [MARK_ENV]: token },
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d));
  child.stderr.on('data', (d: Buffer) => (output += d));
  const timer = setTimeout(() => {
    output += `\nprivate root: killed after ${opts.timeoutMs} ms\n`;
    child.kill('SIGKILL');
  }, opts.timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}
