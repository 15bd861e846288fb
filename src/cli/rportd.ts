#!/usr/bin/env node
import { describeKeys, loadConfig, ConfigError } from '../config/loader.js';
import { SERVER_KEYS, serverConfig } from '../config/server-config.js';
import { errorMessage } from '../log.js';
import { Credentials } from '../server/credentials.js';
import { Rportd } from '../server/rportd.js';
import { loadHostKey } from '../transport/host-key.js';
import { reportNativeAcceleration } from '../transport/native.js';
import { VERSION } from '../version.js';
import { onShutdown, openLogger, parseArgs, runMain } from './main.js';

const USAGE = `rportd ${VERSION}: the rport server. Accepts rport clients over WebSocket+SSH and serves the API.

Usage: rportd [-c rportd.conf] [--key value ...]

  -c, --config FILE     rportd.conf (TOML, RPort's sections and keys); flags override it
  -h, --help            this text
  -v, --version         the version

Every config key is also a flag:
${describeKeys(SERVER_KEYS)}

Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed to start, 2 bad config or usage.
`;

runMain('rportd', async () => {
  const args = parseArgs(process.argv.slice(2), SERVER_KEYS);
  if (args.help) return process.stdout.write(USAGE), 0;
  if (args.version) return process.stdout.write(`rportd ${VERSION}\n`), 0;
  const loaded = loadConfig(SERVER_KEYS, args.config, args.flags);
  const cfg = serverConfig(loaded);
  const root = openLogger(cfg.logFile, cfg.logLevel, 'rportd', loaded.where('logging', 'log_file'));
  const log = root.child('server');
  if (loaded.ignored.length) log.info(`${args.config}: ignoring what this version does not implement: ${loaded.ignored.join(', ')}`);
  let credentials: Credentials;
  try {
    credentials = Credentials.load(cfg.auth, cfg.authFile);
  } catch (err) {
    throw new ConfigError(`${loaded.where('server', 'auth_file')}: ${errorMessage(err)}`);
  }
  reportNativeAcceleration(log);
  const hostKey = loadHostKey(cfg.dataDir, cfg.keySeed);
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
