// The bench's traffic generator and sink, in a child process of their own (forked with IPC by
// bench/lib/traffic-process.ts): neither rport's event loop nor the bench's carries the load, and both
// systems are driven by the same code in the same kind of process.
import {
  echoTarget,
  manySink,
  parallelInto,
  pingPong,
  pullFrom,
  pushInto,
  sinkTarget,
  sourceTarget,
} from './lib/traffic.js';

const sink = await sinkTarget();
let pull = 0;
const source = await sourceTarget(() => pull);
const echo = await echoTarget();
let delivered: number[] = [];
const many = await manySink((ms) => delivered.push(ms));

type Call = { id: number; op: string; args: any[] };
const OPS: Record<string, (...a: any[]) => Promise<unknown> | unknown> = {
  push: (port: number, bytes: number) => pushInto(port, bytes, sink),
  pull: (port: number, bytes: number) => {
    pull = bytes;
    return pullFrom(port, bytes);
  },
  ping: (port: number, rounds: number) => pingPong(port, rounds),
  parallel: async (port: number, n: number, each: number) => {
    delivered = [];
    const r = await parallelInto(port, n, each);
    return { ...r, sinkFairness: Math.min(...delivered) / Math.max(...delivered) };
  },
};

process.on('message', (m: Call) => {
  void (async () => {
    try {
      process.send!({ id: m.id, result: await OPS[m.op]!(...m.args) });
    } catch (err) {
      process.send!({ id: m.id, error: (err as Error).message });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
process.send!({ ready: { sink: sink.port, source: source.port, echo: echo.port, many: many.port } });
