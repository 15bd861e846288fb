#!/usr/bin/env node
import { RPORT_SERVER_NAMES } from '../config/rport-names.js';
import { SERVER_KEYS, serverConfig } from '../config/server-config.js';
import { runDaemon } from '../daemon/run.js';
import { onShutdown, runMain, startConfigured } from './main.js';

runMain('rportd', async () => {
  const started = startConfigured(
    {
      name: 'rportd',
      summary: 'the rport server. Accepts rport clients over WebSocket+SSH and serves the API.',
      configFile: 'rportd.conf',
      defs: SERVER_KEYS,
      documented: RPORT_SERVER_NAMES,
      notes: 'Exit codes: 0 stopped by SIGTERM/SIGINT, 1 failed to start, 2 bad config or usage.',
    },
    serverConfig,
  );
  if (typeof started === 'number') return started;
  const { cfg, config: loaded, root } = started;
  return runDaemon(cfg, loaded, root, onShutdown);
});
