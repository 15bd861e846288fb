import type { WatchdogFacts } from '../transport/protocol.js';

/** What the connection loop reports; the watchdog turns these into state.json and sd_notify updates. */
export interface ClientObserver {
  /** Reported to the server with the connection request and each ping. */
  facts(): WatchdogFacts;
  connected(server: string, latencyNs: number): void;
  pinged(server: string, latencyNs: number): void;
  retrying(waitMs: number): void;
}
