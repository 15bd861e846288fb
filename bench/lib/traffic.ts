import { connect, createServer, type Server, type Socket } from 'node:net';

// Traffic through a port, measured from this process: bytes pushed into it and counted at the target,
// bytes sent by the target and counted here, and 1-byte round trips.

const CHUNK = Buffer.alloc(1 << 20, 0x5a);

/** Writes `bytes` to the socket in `chunk`-sized pieces, waiting for 'drain' when it must; then `done`. */
export function pump(s: Socket, bytes: number, done: () => void, chunk: Buffer = CHUNK): void {
  let left = bytes;
  const more = () => {
    while (left > 0) {
      const n = Math.min(left, chunk.length);
      left -= n;
      if (!s.write(n === chunk.length ? chunk : chunk.subarray(0, n))) return void s.once('drain', more);
    }
    done();
  };
  more();
}

export interface Target {
  port: number;
  close(): Promise<void>;
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

function closer(server: Server, sockets: Set<Socket>): () => Promise<void> {
  return () =>
    new Promise((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
}

/** A target that reads and discards; `received(n)` resolves when one connection has delivered n bytes. */
export async function sinkTarget(): Promise<Target & { expect(bytes: number): Promise<number> }> {
  const sockets = new Set<Socket>();
  let waiting: { bytes: number; resolve: (t: number) => void } | undefined;
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let got = 0;
    s.on('data', (b: Buffer) => {
      got += b.length;
      if (waiting && got >= waiting.bytes) {
        const w = waiting;
        waiting = undefined;
        w.resolve(performance.now());
      }
    });
    s.on('error', () => s.destroy());
  });
  const port = await listen(server);
  return {
    port,
    close: closer(server, sockets),
    expect: (bytes) => new Promise((resolve) => (waiting = { bytes, resolve })),
  };
}

/** A target that sends `bytes` to every connection, then ends. */
export async function sourceTarget(bytes: () => number): Promise<Target> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    pump(s, bytes(), () => s.end());
  });
  return { port: await listen(server), close: closer(server, sockets) };
}

export async function echoTarget(): Promise<Target> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    s.setNoDelay(true);
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
    s.pipe(s);
  });
  return { port: await listen(server), close: closer(server, sockets) };
}

/** Pushes `bytes` into `port`; resolves seconds until the sink counted them all. */
export async function pushInto(
  port: number,
  bytes: number,
  sink: { expect(b: number): Promise<number> },
): Promise<number> {
  const done = sink.expect(bytes);
  const t0 = performance.now();
  const s = connect(port, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise<void>((resolve) => s.once('connect', () => pump(s, bytes, resolve)));
  const t1 = await done;
  s.destroy();
  return (t1 - t0) / 1000;
}

/** Reads from `port` until `bytes` arrived; resolves the seconds it took. */
export function pullFrom(port: number, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let got = 0;
    const s = connect(port, '127.0.0.1');
    s.on('data', (b: Buffer) => {
      got += b.length;
      if (got >= bytes) {
        resolve((performance.now() - t0) / 1000);
        s.destroy();
      }
    });
    s.on('error', reject);
    s.on('close', () => (got < bytes ? reject(new Error(`stream ended after ${got} of ${bytes} bytes`)) : undefined));
  });
}

/** 1-byte ping-pong through `port` to an echo target; resolves each round trip in microseconds. */
export function pingPong(port: number, rounds: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.setNoDelay(true);
    const out: number[] = [];
    const one = Buffer.from([1]);
    let t0 = 0n;
    s.on('connect', () => {
      t0 = process.hrtime.bigint();
      s.write(one);
    });
    s.on('data', (b: Buffer) => {
      for (let i = 0; i < b.length; i++) {
        const now = process.hrtime.bigint();
        out.push(Number(now - t0) / 1000);
        if (out.length >= rounds) {
          s.destroy();
          return resolve(out);
        }
        t0 = now;
        s.write(one);
      }
    });
    s.on('error', reject);
  });
}

/** Waits until something accepts connections on the port. */
export async function portOpen(port: number, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms}ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * A sink for many streams: reads everything and ends each connection when its sender is done, so the
 * sender sees the end. `delivered(ms)` gets each connection's time from its first byte to its end here.
 */
export async function manySink(delivered: (ms: number) => void): Promise<Target> {
  const sockets = new Set<Socket>();
  const server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    let first = 0;
    s.once('data', () => (first = performance.now()));
    s.resume();
    s.on('end', () => {
      delivered(performance.now() - first);
      s.end();
    });
    s.on('error', () => s.destroy());
  });
  return { port: await listen(server), close: closer(server, sockets) };
}

/**
 * n parallel streams into `entry`, each `each` bytes: seconds until the last one finished, and fairness,
 * the fastest stream's time over the slowest's, each timed from its own connect to its end (from one
 * common start, 100 connects made even raw TCP score 0.2: it timed connection set-up, not the sharing).
 */
export async function parallelInto(
  entry: number,
  n: number,
  each: number,
): Promise<{ seconds: number; fairness: number }> {
  const times: number[] = [];
  const chunk = Buffer.alloc(256 * 1024, 0x33);
  const t0 = performance.now();
  let last = t0;
  await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<void>((resolve, reject) => {
          const s = connect(entry, '127.0.0.1');
          let connected = 0;
          s.once('connect', () => {
            connected = performance.now();
            pump(s, each, () => s.end(), chunk);
          });
          s.on('error', reject);
          s.on('close', () => {
            last = performance.now();
            times.push(last - connected);
            resolve();
          });
        }),
    ),
  );
  return { seconds: (last - t0) / 1000, fairness: Math.min(...times) / Math.max(...times) };
}
