import type { Db } from '../db/db.js';
import { disconnectClientsOfNode } from './clients.js';
import { abandonRunning } from './jobs.js';
import { releasePortsOfNode } from './tunnels.js';

export interface NodeRow {
  id: string;
  /** http://host:port of its API, for node-to-node calls; '' without an API. */
  api_url: string;
  client_address: string;
  /** The address its tunnels are reached at. */
  public_host: string;
  started_at: number;
  heartbeat_at: number;
}

/** What a cluster keeps in the database: the nodes with their heartbeats, and the secret they share. */
export interface NodeRecords {
  heartbeat(n: NodeRow): Promise<void>;
  nodes(): Promise<NodeRow[]>;
  /** A node stopping cleanly leaves at once rather than after the dead bound. */
  removeNode(id: string): Promise<void>;
  /** A node that starts, or one that stops: none of its clients is connected any more, its ports are free. */
  releaseNode(nodeId: string, now: number): Promise<void>;
  /** Nodes silent since `before` are dead: they leave, their clients and ports are released; returns their ids. */
  sweepDeadNodes(before: number, now: number): Promise<string[]>;
  /** The cluster's secret: the first node's candidate becomes everyone's. */
  clusterSecret(candidate: string): Promise<string>;
}

/** The nodes and cluster_secret tables; a node's end also releases what it held in the other aggregates. */
export class SqlNodeRecords implements NodeRecords {
  constructor(private readonly db: Db) {}

  async heartbeat(n: NodeRow): Promise<void> {
    await this.db.run(
      `INSERT INTO nodes (id, api_url, client_address, public_host, started_at, heartbeat_at) VALUES (?, ?, ?, ?, ?, ?)
      ON CONFLICT (id) DO UPDATE SET api_url = excluded.api_url, client_address = excluded.client_address, public_host = excluded.public_host,
        started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at`,
      [n.id, n.api_url, n.client_address, n.public_host, n.started_at, n.heartbeat_at],
    );
  }

  nodes(): Promise<NodeRow[]> {
    return this.db.all<NodeRow>('SELECT * FROM nodes ORDER BY id');
  }

  async removeNode(id: string): Promise<void> {
    await this.db.run('DELETE FROM nodes WHERE id = ?', [id]);
  }

  releaseNode(nodeId: string, now: number): Promise<void> {
    return this.db.tx(async (q) => {
      await disconnectClientsOfNode(q, nodeId, now, true);
      await releasePortsOfNode(q, nodeId);
    });
  }

  sweepDeadNodes(before: number, now: number): Promise<string[]> {
    return this.db.tx(async (q) => {
      const dead = (await q.all<{ id: string }>('SELECT id FROM nodes WHERE heartbeat_at < ?', [before])).map(
        (r) => r.id,
      );
      for (const id of dead) {
        await disconnectClientsOfNode(q, id, now, false);
        await releasePortsOfNode(q, id);
        // Its jobs' results would have come in through it: no longer awaited there (a late one still counts).
        await abandonRunning(
          q,
          id,
          'unknown',
          `node ${id}, which sent the job, stopped heart-beating: its result is filled in if the client delivers it to another node`,
        );
        await q.run('DELETE FROM nodes WHERE id = ?', [id]);
      }
      return dead;
    });
  }

  async clusterSecret(candidate: string): Promise<string> {
    await this.db.run('INSERT INTO cluster_secret (id, secret) VALUES (1, ?) ON CONFLICT (id) DO NOTHING', [candidate]);
    return (await this.db.get<{ secret: string }>('SELECT secret FROM cluster_secret WHERE id = 1'))!.secret;
  }
}
