// A soak under abuse: one rportd on 127.0.0.1, 200 healthy clients (in this process, as bench/fleet.ts runs
// them) of which 20 carry live tunnels with checksummed bytes, and at the same time hostile peers of every
// kind (silent, slow, garbage bytes, wrong passwords from 127.0.0.2-5; control channel floods, logged in) for
// SOAK_SECONDS (default 60). Checked: no healthy client disconnected, no tunnel byte lost or corrupted,
// every hostile connection closed by a limit, rportd's memory back near its baseline afterwards.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import test from 'node:test';
import WebSocket from 'ws';
import { RportClient } from '../src/client/client.js';
import type { ClientObserver } from '../src/watchdog/observer.js';
import { StepClock } from '../src/watchdog/step-clock.js';
import { CLIENT_KEYS, clientConfig } from '../src/config/client-config.js';
import { loadConfig } from '../src/config/loader.js';
import { LogSink, Logger } from '../src/log.js';
import { METHOD, WS_SUBPROTOCOL } from '../src/transport/protocol.js';
import { CLIENT_AUTH, cleanup, eventually, startServer, type ServerHandle } from '../harness/procs.js';
import { connectRequest, rawLink, rawSsh, requestConnect } from './helpers/raw-client.js';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 60);
const HEALTHY = 200;
const TUNNELS = 20;
const BLOCK = 16 << 10;

const rssKb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

async function metrics(server: ServerHandle): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${server.apiPort}/metrics`, {
    headers: { authorization: `Basic ${Buffer.from('admin:apipass').toString('base64')}` },
  });
  assert.equal(res.status, 200, 'the API answers /metrics');
  const out = new Map<string, number>();
  for (const m of (await res.text()).matchAll(
    /^(rport_(?:connections_refused|handshake_failures)_total\{[^}]*\}) (\d+)$/gm,
  ))
    out.set(m[1]!, Number(m[2]));
  return out;
}

/** Echoes every byte back: the far end of each tunnel. */
async function echoServer(t: test.TestContext): Promise<number> {
  const socks = new Set<Socket>();
  const srv = createServer((s) => {
    socks.add(s);
    s.on('close', () => socks.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(
    t,
    () =>
      new Promise<void>((r) => {
        for (const s of socks) s.destroy();
        srv.close(() => r());
      }),
  );
  return (srv.address() as { port: number }).port;
}

/** Sends random blocks through a tunnel until `until`, checking that each comes back whole and unchanged. */
function streamThrough(port: number, until: number): Promise<{ bytes: number; corrupt: number; error?: string }> {
  return new Promise((resolve) => {
    const s = connect({ port, host: '127.0.0.1' });
    let bytes = 0;
    let corrupt = 0;
    let sent = Buffer.alloc(0);
    let got: Buffer[] = [];
    let gotLen = 0;
    const next = () => {
      if (Date.now() > until) {
        s.end();
        return resolve({ bytes, corrupt });
      }
      sent = randomBytes(BLOCK);
      got = [];
      gotLen = 0;
      s.write(sent);
    };
    s.on('data', (b: Buffer) => {
      got.push(b);
      gotLen += b.length;
      if (gotLen < BLOCK) return;
      const back = Buffer.concat(got);
      const sum = (x: Buffer) => createHash('sha256').update(x).digest('hex');
      if (back.length !== BLOCK || sum(back) !== sum(sent)) corrupt++;
      bytes += BLOCK;
      // Paced (20 blocks a second a tunnel): live traffic, without starving the tests that run beside this one.
      setTimeout(next, 50);
    });
    s.on('error', (err) => resolve({ bytes, corrupt, error: err.message }));
    s.on('close', () =>
      resolve({ bytes, corrupt, error: Date.now() > until ? undefined : 'the tunnel connection closed early' }),
    );
    s.on('connect', next);
  });
}

interface Hostile {
  kind: string;
  opened: number;
  open: Set<{ closedAt?: number }>;
}

test(
  `soak: ${HEALTHY} healthy clients with ${TUNNELS} live tunnels and hostile peers of every kind for ${SECONDS}s`,
  { timeout: (SECONDS + 180) * 1000 },
  async (t) => {
    const server = await startServer(t, [
      '--log-level',
      'info',
      '--client-login-timeout',
      '3s',
      '--max-unauthenticated-connections-per-address',
      '64',
      '--max-failed-login',
      '5',
      '--check-clients-connection-interval',
      '10s',
      '--check-clients-connection-timeout',
      '5s',
    ]);
    const echo = await echoServer(t);

    // The healthy fleet, in this process.
    const log = new Logger(LogSink.stderr(), 'error', 'soak');
    let up = 0;
    let disconnects = 0;
    const clients: RportClient[] = [];
    cleanup(t, () => clients.forEach((c) => c.stop()));
    for (let i = 0; i < HEALTHY; i++) {
      const flags = new Map<string, string[]>([
        ['server', [`127.0.0.1:${server.port}`]],
        ['auth', [CLIENT_AUTH]],
        ['id', [`soak-${i}`]],
        ['keep-alive', ['5s']],
        ['keep-alive-timeout', ['10s']],
        ['max-retry-interval', ['2s']],
        ['data-dir', ['/nonexistent']],
      ]);
      let connected = false;
      const observer: ClientObserver = {
        facts: () => ({
          integration: false,
          systemd_watchdog_sec: null,
          heartbeat_budget_sec: 0,
          last_state: 'connected',
        }),
        connected: () => {
          if (!connected) up++;
          connected = true;
        },
        pinged: () => undefined,
        retrying: () => {
          if (connected) disconnects++;
          connected = false;
        },
      };
      const c = new RportClient(
        clientConfig(loadConfig(CLIENT_KEYS, undefined, flags)),
        log,
        observer,
        new StepClock(),
      );
      clients.push(c);
      void c.run();
    }
    await eventually(() => (up === HEALTHY ? true : undefined), 60_000, `${HEALTHY} clients connected`);
    const entries: number[] = [];
    for (let i = 0; i < TUNNELS; i++) {
      const r = await server.api(
        `/api/v1/clients/soak-${i}/tunnels?remote=127.0.0.1:${echo}&local=127.0.0.1:0`,
        undefined,
        'PUT',
      );
      assert.equal(r.status, 200, JSON.stringify(r.body));
      entries.push(Number(String(r.body.data.local).split(':').pop()));
    }
    const baselineKb = rssKb(server.proc.pid);
    let peakKb = baselineKb;
    const sampler = setInterval(() => (peakKb = Math.max(peakKb, rssKb(server.proc.pid))), 250);
    cleanup(t, () => clearInterval(sampler));
    const before = await metrics(server);

    const until = Date.now() + SECONDS * 1000;
    const traffic = Promise.all(entries.map((p) => streamThrough(p, until)));

    // Hostile peers, each kind in a loop until the end; every connection they open is tracked until closed.
    const hostile: Hostile[] = [];
    const track = (kind: string) => {
      let h = hostile.find((x) => x.kind === kind);
      if (!h) hostile.push((h = { kind, opened: 0, open: new Set() }));
      const entry = {};
      h.opened++;
      h.open.add(entry);
      return () => h!.open.delete(entry);
    };
    const raw = (from: string, kind: string, then: (s: Socket) => void) => {
      const done = track(kind);
      const s = connect({ port: server.port, host: '127.0.0.1', localAddress: from }, () => then(s));
      s.on('error', () => undefined);
      s.on('close', done);
      return s;
    };
    const loop = async (wave: () => Promise<unknown>) => {
      while (Date.now() < until) await wave();
    };
    const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));
    const held: Socket[] = [];
    cleanup(t, () => held.forEach((s) => s.destroy()));
    const kinds = [
      // Silent: 100 TCP connections a wave from one address, never a byte (past the per-address limit of 64).
      loop(async () => {
        for (let i = 0; i < 100; i++) held.push(raw('127.0.0.2', 'silent', () => undefined));
        await pause(2000);
      }),
      // Slow: the upgrade request a few bytes at a time.
      loop(async () => {
        for (let i = 0; i < 20; i++) {
          const s = raw('127.0.0.3', 'slow', () => {
            const text = `GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n`;
            let at = 0;
            const drip = setInterval(
              () => (at < text.length && !s.destroyed ? s.write(text.slice(at, (at += 4))) : clearInterval(drip)),
              300,
            );
            s.on('close', () => clearInterval(drip));
          });
          held.push(s);
        }
        await pause(2000);
      }),
      // Garbage: a WebSocket upgrade, then random bytes where SSH should be.
      loop(async () => {
        await Promise.all(
          Array.from(
            { length: 10 },
            () =>
              new Promise<void>((resolve) => {
                const done = track('garbage');
                const ws = new WebSocket(`ws://127.0.0.1:${server.port}/`, WS_SUBPROTOCOL, {
                  perMessageDeflate: false,
                  localAddress: '127.0.0.4',
                });
                ws.on('error', () => undefined);
                ws.on('open', () => ws.send(randomBytes(1 + Math.floor(Math.random() * 4096))));
                ws.on('close', () => {
                  done();
                  resolve();
                });
              }),
          ),
        );
        await pause(200);
      }),
      // Wrong passwords: SSH auth with guesses at a few ids, until the throttle bans each (then 403s).
      loop(async () => {
        await Promise.all(
          Array.from({ length: 5 }, (_x, i) => {
            const done = track('wrong password');
            let tries = 0;
            const { closed } = rawSsh(
              server.port,
              `guess-${i}`,
              (_m, _p, next) =>
                tries++ < 10
                  ? next({ type: 'password', username: `guess-${i}`, password: `wrong-${tries}` } as never)
                  : next(false as never),
              {},
              '127.0.0.5',
            );
            return closed.then(done);
          }),
        );
        await pause(500);
      }),
      // Control floods: a logged-in link sending pings far above 200 a second.
      loop(async () => {
        const done = track('control flood');
        const link = await rawLink(server.port, CLIENT_AUTH).catch(() => undefined);
        if (!link) return done();
        link.control.on('close', done);
        await requestConnect(link, connectRequest(`flood-${Math.floor(Math.random() * 1e9)}`, process.pid)).catch(
          () => undefined,
        );
        for (let i = 0; i < 2000 && !link.control.closed; i++)
          void link.control.request(METHOD.ping, {}, 5000).catch(() => undefined);
        await eventually(() => (link.control.closed ? true : undefined), 10_000, 'the flood closed');
        link.close();
        await pause(500);
      }),
    ];
    await Promise.all(kinds);
    const results = await traffic;

    // Every hostile connection closed by a limit (login timeout at most 3s, the header timeout 10s).
    await eventually(
      () => (hostile.every((h) => h.open.size === 0) ? true : undefined),
      30_000,
      'every hostile connection closed',
    ).catch(() => assert.fail(`still open: ${hostile.map((h) => `${h.kind} ${h.open.size}`).join(', ')}`));
    const after = await metrics(server);
    const delta = [...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const).filter(([, v]) => v > 0);
    // Memory: after a settle period without hostile peers, back near the baseline.
    await new Promise((r) => setTimeout(r, 15_000));
    clearInterval(sampler);
    const settledKb = rssKb(server.proc.pid);

    const tunnelBytes = results.reduce((n, r) => n + r.bytes, 0);
    t.diagnostic(`hostile connections: ${hostile.map((h) => `${h.kind} ${h.opened}`).join(', ')}`);
    t.diagnostic(`refusals and handshake failures: ${delta.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    t.diagnostic(
      `tunnels: ${TUNNELS} carried ${(tunnelBytes / 2 ** 20).toFixed(1)} MiB each way, checksummed; rportd RSS baseline ${(baselineKb / 1024).toFixed(0)} MiB, peak ${(peakKb / 1024).toFixed(0)} MiB, after ${(settledKb / 1024).toFixed(0)} MiB`,
    );

    assert.equal(disconnects, 0, 'no healthy client was disconnected');
    assert.equal(up, HEALTHY);
    for (const r of results) {
      assert.equal(r.error, undefined, `a tunnel failed: ${r.error}`);
      assert.equal(r.corrupt, 0, 'no tunnel block came back changed');
      assert.ok(r.bytes > 0, 'every tunnel carried bytes');
    }
    assert.equal(server.proc.exit, undefined, 'rportd still runs');
    for (const k of [
      'rport_handshake_failures_total{reason="timeout"}',
      'rport_handshake_failures_total{reason="auth"}',
      'rport_connections_refused_total{limit="per_address"}',
    ]) {
      assert.ok((after.get(k) ?? 0) > (before.get(k) ?? 0), `${k} counted the hostile peers`);
    }
    assert.ok(
      settledKb - baselineKb < 64 * 1024,
      `rportd's RSS settled at ${settledKb} KiB, baseline ${baselineKb} KiB`,
    );
  },
);
