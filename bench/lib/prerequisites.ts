import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** What the bench runs besides rport, each as a file that shows it is installed and its Debian package. */
const NEEDED: Array<{ files: string[]; pkg: string; for: string }> = [
  { files: ['/usr/sbin/sshd'], pkg: 'openssh-server', for: 'the OpenSSH anchor (a private sshd)' },
  { files: ['/usr/bin/ssh', '/usr/bin/ssh-keygen'], pkg: 'openssh-client', for: 'the OpenSSH anchor (ssh -R)' },
  { files: ['/lib/systemd/systemd', '/usr/lib/systemd/systemd'], pkg: 'systemd', for: 'the watchdog scenario (a real systemd)' },
  { files: ['/usr/bin/unshare'], pkg: 'util-linux', for: 'the watchdog scenario (a private mount namespace)' },
];

const APT_TIMEOUT_MS = 10 * 60_000;

/**
 * Installs the Debian packages that are missing (as root, with apt-get); otherwise says which to install.
 * Returns a line per package installed, or throws with the install command.
 */
export function ensurePrerequisites(): string[] {
  const missing = NEEDED.filter((n) => !n.files.some((f) => existsSync(f)));
  if (!missing.length) return [];
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  const why = missing.map((m) => `${m.pkg} for ${m.for}`).join(', ');
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    throw new Error(`missing ${why}: install them (apt-get install ${pkgs.join(' ')}) or run the bench as root on Debian`);
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [['update', '-qq'], ['install', '-y', '-qq', '--no-install-recommends', ...pkgs]]) {
    const r = spawnSync('apt-get', args, { env, encoding: 'utf8', timeout: APT_TIMEOUT_MS });
    if (r.status !== 0) throw new Error(`apt-get ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').pop()}`);
  }
  const still = missing.filter((n) => !n.files.some((f) => existsSync(f)));
  if (still.length) throw new Error(`apt-get installed ${pkgs.join(' ')} but ${still.map((m) => m.files.join(' or ')).join(', ')} is still missing`);
  return missing.map((m) => `installed ${m.pkg} for ${m.for}`);
}
