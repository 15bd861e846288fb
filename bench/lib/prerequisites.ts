import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { SSHD_PATHS } from '../../harness/sshd.js';
import { HARNESS_TOOLS, SYSTEMD_PATHS } from '../../harness/systemd.js';

/** What the bench runs besides rport, each as a file that shows it is installed and its Debian package. */
interface Need {
  files: string[];
  pkg: string;
  for: string;
}
const NEEDED: Need[] = [
  { files: SSHD_PATHS, pkg: 'openssh-server', for: 'the OpenSSH anchor (a private sshd)' },
  { files: ['/usr/bin/ssh'], pkg: 'openssh-client', for: 'the OpenSSH anchor (ssh -R)' },
  { files: ['/usr/bin/ssh-keygen'], pkg: 'openssh-client', for: 'the OpenSSH anchor (its keys)' },
  { files: SYSTEMD_PATHS, pkg: 'systemd', for: 'the watchdog scenario (a real systemd)' },
  ...Object.entries(HARNESS_TOOLS).map(([file, pkg]) => ({
    files: [file],
    pkg,
    for: 'the watchdog scenario (systemd in a private mount namespace)',
  })),
];
const installed = (n: Need) => n.files.some((f) => existsSync(f));

const APT_TIMEOUT_MS = 10 * 60_000;

/**
 * Installs the Debian packages that are missing (as root, with apt-get); otherwise says which to install.
 * Returns a line per package installed, or throws with the install command.
 */
export function ensurePrerequisites(): string[] {
  const missing = NEEDED.filter((n) => !installed(n));
  if (!missing.length) return [];
  const pkgs = [...new Set(missing.map((m) => m.pkg))];
  const why = missing.map((m) => `${m.pkg} for ${m.for}`).join(', ');
  if (process.getuid?.() !== 0 || !existsSync('/usr/bin/apt-get')) {
    throw new Error(
      `missing ${why}: install them (apt-get install ${pkgs.join(' ')}) or run the bench as root on Debian`,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  for (const args of [
    ['update', '-qq'],
    ['install', '-y', '-qq', '--no-install-recommends', ...pkgs],
  ]) {
    const r = spawnSync('apt-get', args, { env, encoding: 'utf8', timeout: APT_TIMEOUT_MS });
    if (r.status !== 0)
      throw new Error(
        `apt-get ${args.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${(r.stderr ?? '').trim().split('\n').pop()}`,
      );
  }
  const still = missing.filter((n) => !installed(n));
  if (still.length)
    throw new Error(
      `apt-get installed ${pkgs.join(' ')} but ${still.map((m) => m.files.join(' or ')).join(', ')} is still missing`,
    );
  return missing.map((m) => `installed ${m.pkg} for ${m.for}`);
}
