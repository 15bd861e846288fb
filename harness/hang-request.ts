// Preloaded into an rport under test (HANG_REQUEST in procs.ts: node --import this file): its connection
// request step never ends, as a server that never answers would leave it, so that the watchdog must see it.
import { injectHang } from '../src/watchdog/step-clock.js';

injectHang('request');
