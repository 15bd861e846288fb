#!/usr/bin/env node
import { ConfigError } from '../config/loader.js';
import { readableByOthers } from '../files.js';
import { SERVER_KEYS, serverConfig } from '../config/server-config.js';
import { errorMessage } from '../log.js';
import { Credentials } from '../server/credentials.js';
import { Rportd } from '../server/rportd.js';
import { loadHostKey } from '../transport/host-key.js';
import { reportNativeAcceleration } from '../transport/native.js';
import { VERSION } from '../version.js';
import { onShutdown, runMain, startService } from './main.js';

runMain('rportd', async () => {
  const started = startService(
    {
      name: 'rportd',
      summary: 'the rport server. Accepts rport clients over WebSocket+SSH and serves the API.',
      configFile: 'rportd.conf',
      defs: SERVER_KEYS,
      notes: 'Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed to start, 2 bad config or usage.',
    },
    serverConfig,
  );
  if (typeof started === 'number') return started;
  const { cfg, config: loaded, root } = started;
  const log = root.child('server');
  let credentials: Credentials;
  try {
    credentials = Credentials.load(cfg.auth, cfg.authFile);
  } catch (err) {
    throw new ConfigError(`${loaded.where('server', 'auth_file')}: ${errorMessage(err)}`);
  }
  reportNativeAcceleration(log);
  const hostKey = loadHostKey(cfg.dataDir, cfg.keySeed);
  // As OpenSSH does for private keys: say so when a secret file is open to other users (the database is
  // made 0600 by the store itself).
  for (const [what, file] of [['[server] auth_file', cfg.authFile], ['[server] tls_key', loaded.get<string>('server', 'tls_key')], ['host key', hostKey.file]]) {
    const warning = file ? readableByOthers(file, what!) : undefined;
    if (warning) log.warn(warning);
  }
  const server = new Rportd(cfg, hostKey, credentials, root);
  const { clients, api } = await server.start();
  log.info(`rportd ${VERSION} listening for clients on ${cfg.tls ? 'wss' : 'ws'}://${clients.address}:${clients.port}/ (pid ${process.pid}); ${credentials.size} client credential(s)`);
  log.info(`host key fingerprint ${hostKey.fingerprint} (from ${hostKey.source})`);
  if (api) log.info(`API listening on http://${api.address}:${api.port}/api/v1/`);
  await new Promise<void>((resolve) => onShutdown(() => {
    log.info('stopping');
    void server.stop().then(resolve);
  }));
  log.info('stopped');
  return 0;
});
