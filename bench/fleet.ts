// A fleet of real rport clients (the RportClient class) in one process, for the idle-fleet and
// reconnect-storm scenarios. Prints "connected N" each time the number of connected clients changes.
import { RportClient } from '../src/client/client.js';
import type { ClientObserver } from '../src/watchdog/observer.js';
import { StepClock } from '../src/watchdog/step-clock.js';
import { CLIENT_KEYS, clientConfig } from '../src/config/client-config.js';
import { loadConfig } from '../src/config/loader.js';
import { LogSink, Logger } from '../src/log.js';

const [server, count, prefix, keepAlive, maxRetry] = process.argv.slice(2);
const n = Number(count);
let connected = 0;
let reported = -1;
const report = () => {
  if (connected !== reported) {
    reported = connected;
    process.stdout.write(`connected ${connected}\n`);
  }
};
setInterval(report, 100);
const log = new Logger(LogSink.stderr(), 'error', 'fleet');
const clients: RportClient[] = [];
for (let i = 0; i < n; i++) {
  const flags = new Map<string, string[]>([
    ['server', [server!]],
    ['auth', ['bench:bench-secret']],
    ['id', [`${prefix}-${i}`]],
    ['keep-alive', [keepAlive!]],
    ['max-retry-interval', [maxRetry!]],
    ['data-dir', ['/nonexistent']],
  ]);
  const cfg = clientConfig(loadConfig(CLIENT_KEYS, undefined, flags));
  let up = false;
  const observer: ClientObserver = {
    facts: () => ({
      integration: false,
      systemd_watchdog_sec: null,
      heartbeat_budget_sec: 0,
      last_state: up ? 'connected' : 'reconnecting',
    }),
    connected: () => {
      if (!up) connected++;
      up = true;
    },
    pinged: () => undefined,
    retrying: () => {
      if (up) connected--;
      up = false;
    },
  };
  const c = new RportClient(cfg, log, observer, new StepClock());
  clients.push(c);
  void c.run();
  // Spread the first connects a little, as a real fleet's are.
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
}
process.on('SIGTERM', () => {
  for (const c of clients) c.stop();
  setTimeout(() => process.exit(0), 500);
});
