import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, Proc } from './procs.js';

/** Where Debian's openssh-server puts sshd. */
export const SSHD_PATHS = ['/usr/sbin/sshd'];
/** The installed sshd, looked up when asked: the bench may install it after this module is loaded. */
export const sshdPath = (): string | undefined => SSHD_PATHS.find((p) => existsSync(p));

/**
 * A private OpenSSH server on 127.0.0.1: its own host key, config and authorized key in `dir`, never the
 * system's. Root may log in with the key at `userKey`.
 */
export async function startSshd(
  dir: string,
  onCleanup: (fn: () => unknown) => void,
  extraConfig: string[] = [],
): Promise<{ port: number; userKey: string; proc: Proc }> {
  chmodSync(dir, 0o755);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(dir, 'user_key')]);
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(join(dir, 'user_key.pub')));
  chmodSync(join(dir, 'authorized_keys'), 0o600);
  mkdirSync('/run/sshd', { recursive: true });
  const port = await freePort();
  writeFileSync(
    join(dir, 'sshd_config'),
    [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      'PermitRootLogin prohibit-password',
      'StrictModes no',
      `PidFile ${join(dir, 'sshd.pid')}`,
      ...extraConfig,
    ].join('\n') + '\n',
  );
  const proc = new Proc(
    spawn(sshdPath()!, ['-D', '-e', '-f', join(dir, 'sshd_config')], { stdio: ['ignore', 'pipe', 'pipe'] }),
  );
  onCleanup(() => proc.stop());
  await proc.waitFor(/Server listening on 127\.0\.0\.1 port/);
  return { port, userKey: join(dir, 'user_key'), proc };
}
