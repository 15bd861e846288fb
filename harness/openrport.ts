import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The real openrport 0.9.13 binaries, as RPort users run them, for the interop tests and the bench:
// ../shared/peers/openrport/bin beside the checkout (dist/harness/ is two below it), or OPENRPORT_BIN.
const REPO = fileURLToPath(new URL('../../', import.meta.url));
export const OPENRPORT_BIN = process.env.OPENRPORT_BIN ?? join(REPO, '..', 'shared', 'peers', 'openrport', 'bin');

/** Why the real pair cannot run here, or undefined when both binaries are there. */
export function openrportMissing(): string | undefined {
  return existsSync(join(OPENRPORT_BIN, 'rport')) && existsSync(join(OPENRPORT_BIN, 'rportd'))
    ? undefined
    : `no openrport binaries in ${OPENRPORT_BIN} (set OPENRPORT_BIN to their folder)`;
}

/** A real rportd's rportd.conf on loopback: clients log in with `auth`, its API (basic auth) needs jwt_secret. */
export function openrportdConf(o: {
  port: number;
  apiPort: number;
  seed: string;
  auth: string;
  apiAuth: string;
  dir: string;
  logLevel: string;
}): string {
  return `[server]\n  address = "127.0.0.1:${o.port}"\n  key_seed = "${o.seed}"\n  auth = "${o.auth}"\n  data_dir = "${o.dir}"\n  allow_root = true\n[api]\n  address = "127.0.0.1:${o.apiPort}"\n  jwt_secret = "0123456789abcdef0123456789abcdef"\n  auth = "${o.apiAuth}"\n[logging]\n  log_level = "${o.logLevel}"\n`;
}

/**
 * A real client's rport.conf as RPort users write it. allow_root: it refuses root otherwise; updates_interval
 * '0' unless given: no package-manager checks; keep-alive every 2 s so a lost server is seen within the tests' waits.
 */
export function openrportClientConf(o: {
  server: string;
  fingerprint: string;
  auth: string;
  id: string;
  dir: string;
  tunnelAllowed: string;
  remotes: string[];
  logLevel: string;
  updatesInterval?: string;
}): string {
  return [
    '[client]',
    `  server = "${o.server}"`,
    `  fingerprint = "${o.fingerprint}"`,
    `  auth = "${o.auth}"`,
    `  id = "${o.id}"`,
    `  name = "stock ${o.id}"`,
    '  allow_root = true',
    `  updates_interval = '${o.updatesInterval ?? '0'}'`,
    `  data_dir = "${o.dir}"`,
    `  tunnel_allowed = ["${o.tunnelAllowed}"]`,
    `  remotes = [${o.remotes.map((r) => `'${r}'`).join(', ')}]`,
    '[connection]',
    '  keep_alive = "2s"',
    '  keep_alive_timeout = "5s"',
    '[remote-commands]',
    '  enabled = true',
    '  allow = ["^/usr/bin/.*", "^/bin/.*"]',
    '[remote-scripts]',
    '  enabled = true',
    '[logging]',
    `  log_level = "${o.logLevel}"`,
    '',
  ].join('\n');
}
