import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Config, ConfigError } from '../config/loader.js';
import type { ServerConfig } from '../config/server-config.js';
import { isLoopback } from '../shared/host-port.js';
import { folderWritableByOthers, myUserName, readableByOthers } from '../files.js';
import { errorMessage, type Logger } from '../log.js';
import { Credentials } from '../server/credentials.js';
import { loadHostKey, type HostKey } from '../transport/host-key.js';
import { reportNativeAcceleration } from '../transport/acceleration.js';
import { VERSION } from '../version.js';
import { Daemon } from './daemon.js';

const WHY: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EROFS: 'the file system is read-only',
  ENOENT: 'a folder on the way is missing',
  ENOTDIR: 'a part of the path is a file, not a folder',
  ENOSPC: 'the disk is full',
  SQLITE_CANTOPEN: 'the database cannot be opened',
  SQLITE_READONLY: 'the database is read-only',
};

/** A failure to create or write data_dir (host key, database) as one line: the key, the file, the reason, the fix. */
function dataDirError(c: Config, dir: string, err: unknown): Error {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string' || !(e.code.startsWith('E') || e.code.startsWith('SQLITE_'))) return err as Error;
  // Only failures on data_dir's own files: a port in use at start is not a folder's fault.
  if (e.path && !resolve(e.path).startsWith(resolve(dir))) return err as Error;
  const where = c.where('server', 'data_dir');
  const key = where === '[server] data_dir' ? `[server] data_dir = "${dir}" (the default)` : where;
  const file = e.path && resolve(e.path) !== resolve(dir) ? ` (${e.path})` : '';
  // The user named is this process's, never $(id -un): pasted into an admin's root shell that is root.
  const user = myUserName();
  if (e.code === 'EROFS') {
    return new Error(
      `${key}: cannot write in ${dir}${file}: the file system is read-only there (under systemd, ProtectSystem=strict leaves only the unit's StateDirectory= and ReadWritePaths= writable): set [server] data_dir to the unit's StateDirectory, or add ReadWritePaths=${dir} to the unit`,
    );
  }
  if (e.code === 'EACCES' || e.code === 'EPERM') {
    return new Error(
      `${key}: cannot use ${dir}${file}: permission denied to ${user}, the user rportd runs as: give the folder and its files to ${user} (chown -R ${user} ${dir}; a run as root leaves root's files behind), or set another [server] data_dir`,
    );
  }
  return new Error(
    `${key}: cannot create files in ${dir}${file}: ${WHY[e.code] ?? e.code}: create the folder, writable by ${user}, the user rportd runs as (mkdir -p ${dir} && chown ${user} ${dir}), or set another [server] data_dir`,
  );
}

/**
 * rportd once its config is read: its secrets and data_dir checked, the daemon started, stopped by `onShutdown`
 * (SIGTERM/SIGINT in the command). Resolves with the exit code.
 */
export async function runDaemon(
  cfg: ServerConfig,
  loaded: Config,
  root: Logger,
  onShutdown: (stop: () => void) => void,
): Promise<number> {
  const log = root.child('server');
  let credentials: Credentials;
  try {
    credentials = Credentials.load(cfg.auth, cfg.authFile);
  } catch (err) {
    throw new ConfigError(`${loaded.where('server', 'auth_file')}: ${errorMessage(err)}`);
  }
  reportNativeAcceleration(log);
  let hostKey: HostKey;
  let daemon: Daemon;
  try {
    // Created here first, so that a folder that cannot be made fails with its own reason (not the key file's).
    mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
    // Another user who can write there could plant links to the files rportd writes as its own.
    const unsafe = folderWritableByOthers(cfg.dataDir, true);
    if (unsafe) throw new ConfigError(`${loaded.where('server', 'data_dir')}: ${unsafe.text}`);
    hostKey = loadHostKey(cfg.dataDir, cfg.keySeed);
    daemon = new Daemon(cfg, hostKey, credentials, root);
  } catch (err) {
    throw dataDirError(loaded, cfg.dataDir, err);
  }
  // As OpenSSH does for private keys: say so when a secret file is open to other users (the database is
  // made 0600 by the store itself).
  for (const [what, file] of [
    ['[server] auth_file', cfg.authFile],
    ['[server] tls_key', loaded.get<string>('server', 'tls_key')],
    ['[api] key_file', loaded.get<string>('api', 'key_file')],
    ['host key', hostKey.file],
  ]) {
    const warning = file ? readableByOthers(file, what!) : undefined;
    if (warning) log.warn(warning);
  }
  const clients = await daemon.start().catch((err: unknown) => {
    throw dataDirError(loaded, cfg.dataDir, err);
  });
  const api = await daemon.startApi(root.child('api'));
  log.info(
    `rportd ${VERSION} listening for clients on ${cfg.tls ? 'wss' : 'ws'}://${clients.address}:${clients.port}/ (pid ${process.pid}); ${credentials.size} client credential(s)`,
  );
  log.info(
    `host key fingerprint ${hostKey.fingerprint} (from ${hostKey.source}), ${hostKey.md5Fingerprint} in the MD5 form RPort clients pin`,
  );
  if (api) log.info(`API listening on ${cfg.api.tls ? 'https' : 'http'}://${api.address}:${api.port}/api/v1/`);
  // Passwords and tokens cross the network in the clear: say how to stop that, and what is not on offer.
  if (api && !cfg.api.tls && !isLoopback(api.address))
    log.info(
      `the API on ${api.address}:${api.port} speaks plain HTTP beyond this machine: set [api] cert_file and key_file to serve it over HTTPS (or put a TLS proxy in front); ACME ([api] enable_acme, automatic Let's Encrypt certificates) is not available in this version`,
    );
  await new Promise<void>((resolve) =>
    onShutdown(() => {
      log.info('stopping');
      void daemon.stop().then(resolve);
    }),
  );
  log.info('stopped');
  return 0;
}
