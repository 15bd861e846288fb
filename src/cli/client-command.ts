// The rport client's own command: what `rport` runs without a subcommand, until stopped.
import { RportClient } from '../client/client.js';
import { StepClock } from '../watchdog/step-clock.js';
import { CLIENT_KEYS, clientConfig } from '../config/client-config.js';
import { RPORT_CLIENT_NAMES } from '../config/rport-names.js';
import { reportNativeAcceleration } from '../transport/acceleration.js';
import { VERSION } from '../version.js';
import { SdNotify } from '../watchdog/sd-notify.js';
import { StateFile } from '../watchdog/state-file.js';
import { Watchdog } from '../watchdog/watchdog.js';
import { onShutdown, startConfigured } from './main.js';

export async function clientMain(): Promise<number> {
  const started = startConfigured(
    {
      name: 'rport',
      summary: 'the rport client. Keeps a connection to rportd alive, through restarts, dead links and bad networks.',
      configFile: 'rport.conf',
      defs: CLIENT_KEYS,
      documented: RPORT_CLIENT_NAMES,
      notes: `Subcommands: rport init --server HOST:PORT --auth ID:PASSWORD [--fingerprint SHA256:...] writes a
starter rport.conf (rport init --help); rport service install|uninstall|start|stop runs it as a Windows
service (rport service --help); rport watchdog check|run|install|uninstall is rport-watchdog (rport watchdog --help).
Signals: SIGTERM/SIGINT stop (exit 0), SIGHUP skips the current wait and retries at once.
Exit codes: 0 stopped, 1 gave up after max_retry_count failed attempts or failed to start, 2 bad config or usage.`,
    },
    clientConfig,
  );
  if (typeof started === 'number') return started;
  const { cfg, root } = started;
  const log = root.child('client');
  log.info(
    `rport ${VERSION} starting (pid ${process.pid}); server ${cfg.servers.map((s) => s.href).join(', then ')}; client id ${cfg.id || '(assigned by the server: [client] id is not set and use_system_id = false)'}`,
  );
  reportNativeAcceleration(log);
  if (!cfg.fingerprint) {
    // Without it any server that answers (a man in the middle included) gets the password and the tunnels.
    log.warn(
      `[client] fingerprint is not set: the server's host key is not checked, so a man in the middle would go unnoticed; set fingerprint = "SHA256:..." from the line "host key fingerprint" rportd logs at start (journalctl -u rportd | grep fingerprint), or from GET /api/v1/status`,
    );
  }

  const { notify, watchdogUsec } = SdNotify.fromEnvironment(root.child('watchdog'));
  const clock = new StepClock();
  const watchdog = new Watchdog(
    cfg,
    {
      stateFile: cfg.watchdogIntegration ? new StateFile(cfg.dataDir, root.child('watchdog')) : undefined,
      notify,
      watchdogUsec,
    },
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
}
