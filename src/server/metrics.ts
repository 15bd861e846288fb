import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ClientRegistry } from './client-registry.js';
import type { TunnelManager } from './tunnels/index.js';

/** What GET /metrics shows, in Prometheus' text format. */
export class Metrics {
  readonly registry = new Registry();
  readonly handshakes = new Counter({
    name: 'rport_handshakes_total',
    help: 'Client connections accepted (WebSocket, SSH, auth, connection request)',
    registers: [this.registry],
  });
  readonly handshakeFailures = new Counter({
    name: 'rport_handshake_failures_total',
    help: 'Client connections that failed, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly messagesRefused = new Counter({
    name: 'rport_client_messages_refused_total',
    help: 'Requests and channels of logged-in clients refused (malformed, unknown, over a limit), by kind',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });
  readonly connectionsRefused = new Counter({
    name: 'rport_connections_refused_total',
    help: 'Connections to the client port closed before login by a limit',
    labelNames: ['limit'] as const,
    registers: [this.registry],
  });
  readonly pingRtt = new Histogram({
    name: 'rport_ping_rtt_seconds',
    help: 'Keep-alive round trips between clients and the server',
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });

  constructor(clients: ClientRegistry, tunnels: TunnelManager) {
    new Gauge({
      name: 'rport_clients_connected',
      help: 'Clients connected now',
      registers: [this.registry],
      collect() {
        this.set(clients.size);
      },
    });
    new Gauge({
      name: 'rport_tunnels',
      help: 'Tunnels, and how many of them listen now',
      labelNames: ['state'] as const,
      registers: [this.registry],
      collect() {
        const all = tunnels.all();
        this.set({ state: 'listening' }, all.filter((t) => t.listener).length);
        this.set({ state: 'waiting_for_client' }, all.filter((t) => !t.listener).length);
      },
    });
    new Counter({
      name: 'rport_tunnel_bytes_total',
      help: 'Bytes carried per tunnel: in = from users to the client side, out = back',
      labelNames: ['tunnel', 'client', 'direction'] as const,
      registers: [this.registry],
      collect() {
        this.reset();
        for (const t of tunnels.all()) {
          this.inc({ tunnel: t.id, client: t.clientId, direction: 'in' }, t.bytesIn);
          this.inc({ tunnel: t.id, client: t.clientId, direction: 'out' }, t.bytesOut);
        }
      },
    });
  }
}
