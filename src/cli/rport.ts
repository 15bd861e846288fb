#!/usr/bin/env node
import { RportClient } from '../client/client.js';
import { StepClock } from '../client/step-clock.js';
import { CLIENT_KEYS, clientConfig } from '../config/client-config.js';
import { describeKeys, loadConfig } from '../config/loader.js';
import { reportNativeAcceleration } from '../transport/native.js';
import { VERSION } from '../version.js';
import { SdNotify } from '../watchdog/sd-notify.js';
import { StateFile } from '../watchdog/state-file.js';
import { Watchdog } from '../watchdog/watchdog.js';
import { onShutdown, openLogger, parseArgs, runMain } from './main.js';

const USAGE = `rport ${VERSION}: the rport client. Keeps a connection to rportd alive, through restarts, dead links and bad networks.

Usage: rport [-c rport.conf] [--key value ...]

  -c, --config FILE     rport.conf (TOML, RPort's sections and keys); flags override it
  -h, --help            this text
  -v, --version         the version

Every config key is also a flag:
${describeKeys(CLIENT_KEYS)}

Signals: SIGTERM/SIGINT stop (exit 0), SIGHUP skips the current wait and retries at once.
Exit codes: 0 stopped, 1 gave up after max_retry_count failed attempts or failed to start, 2 bad config or usage.
`;

runMain('rport', async () => {
  const args = parseArgs(process.argv.slice(2), CLIENT_KEYS);
  if (args.help) return process.stdout.write(USAGE), 0;
  if (args.version) return process.stdout.write(`rport ${VERSION}\n`), 0;
  const loaded = loadConfig(CLIENT_KEYS, args.config, args.flags);
  const cfg = clientConfig(loaded);
  const root = openLogger(cfg.logFile, cfg.logLevel, 'rport', loaded.where('logging', 'log_file'));
  const log = root.child('client');
  log.info(`rport ${VERSION} starting (pid ${process.pid}); server ${cfg.servers.map((s) => s.href).join(', then ')}; client id ${cfg.id}`);
  if (loaded.ignored.length) log.info(`${args.config}: ignoring what this version does not implement: ${loaded.ignored.join(', ')}`);
  reportNativeAcceleration(log);

  const { notify, watchdogUsec } = SdNotify.fromEnvironment(root.child('watchdog'));
  const clock = new StepClock();
  const watchdog = new Watchdog(
    cfg,
    { stateFile: cfg.watchdogIntegration ? new StateFile(cfg.dataDir, root.child('watchdog')) : undefined, notify, watchdogUsec },
    clock,
    root.child('watchdog'),
  );
  const client = new RportClient(cfg, log, watchdog, clock);
  onShutdown(() => {
    log.info('stopping');
    watchdog.stop();
    client.stop();
  });
  process.on('SIGHUP', () => {
    log.info('SIGHUP: retrying now');
    client.retryNow();
  });
  watchdog.start();
  const code = await client.run();
  watchdog.stop();
  log.info(code === 0 ? 'stopped' : 'exiting with code 1');
  return code;
});
