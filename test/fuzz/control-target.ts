// Bytes from a peer -> the control channel (newline-delimited JSON) with the server's handlers: nothing
// may throw out of the stream's callbacks, the buffered line stays bounded, every answer is one JSON line
// without a stack frame, and the channel closes with a one-line reason.
import { Duplex } from 'node:stream';
import fc from 'fast-check';
import { validateConnectRequest, validateWatchdogFacts } from '../../src/server/connect-request.js';
import { ControlChannel, MAX_LINE } from '../../src/transport/control-channel.js';
import { METHOD } from '../../src/transport/protocol.js';
import { connectRequest } from '../helpers/raw-client.js';
import { assertOneLine, STACK_FRAME, type Target } from './engine.js';

const json = fc
  .oneof(
    fc.jsonValue({ maxDepth: 3 }),
    fc.record(
      {
        id: fc.oneof(fc.integer(), fc.constant(1), fc.string()),
        method: fc.constantFrom(...Object.values(METHOD), 'x', '__proto__', 'constructor'),
        params: fc.jsonValue({ maxDepth: 2 }),
      },
      { requiredKeys: ['method'] },
    ),
    fc.record(
      { id: fc.constantFrom(1, 2, 0, -1), result: fc.jsonValue({ maxDepth: 2 }), error: fc.jsonValue({ maxDepth: 1 }) },
      { requiredKeys: [] },
    ),
    fc.constant({ id: 7, method: METHOD.connect, params: connectRequest('c1', 1) }),
    fc.constant({
      id: 8,
      method: METHOD.ping,
      params: {
        last_rtt_ms: 1.5,
        watchdog: { integration: true, systemd_watchdog_sec: null, heartbeat_budget_sec: 5, last_state: 'connected' },
      },
    }),
  )
  .map((v) => JSON.stringify(v));

const generate = fc
  .tuple(
    fc.nat(255),
    fc.array(fc.oneof(json, fc.string({ maxLength: 20 }), fc.constant('a'.repeat(MAX_LINE + 10))), { maxLength: 8 }),
  )
  .map(([split, lines]) => Buffer.concat([Buffer.from([split]), Buffer.from(lines.join('\n') + '\n')]));

/** The server's handlers, as ClientConnection registers them: a Refusal or a bad ping must not escape. */
function serverSide(control: ControlChannel): void {
  control.handle(METHOD.connect, (params) => ({ sessionId: validateConnectRequest(params).id }));
  control.handle(METHOD.ping, (params) => {
    const p = (params ?? {}) as { watchdog?: unknown };
    if (p.watchdog !== undefined) validateWatchdogFacts(p.watchdog);
    return { now: 1 };
  });
}

export const controlTarget: Target = {
  name: 'control',
  generate,
  dictionary: [
    '\n',
    '{',
    '}',
    '"id":',
    '"method":',
    '"params":',
    '"result":',
    '"error":',
    'null',
    '1',
    '"connect"',
    '"ping"',
    '"tunnel.open"',
    '[',
    ']',
    ',',
    '"',
    '\\u0000',
    '\\ud800',
    '1e400',
    '"__proto__"',
  ],
  maxLen: MAX_LINE + 4096,
  cover: /\/dist\/src\/(transport|server\/connect-request)/,
  async run(data) {
    const written: string[] = [];
    const stream = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        written.push(chunk.toString());
        cb();
      },
    });
    const control = new ControlChannel(stream, 200);
    serverSide(control);
    let reason: Error | undefined;
    control.on('close', (err: Error) => (reason = err));
    // An answer to this request may be among the fuzzed lines (id 1).
    const ours = control.request(METHOD.ping, {}, 10_000).catch((err: Error) => err);
    const body = data.subarray(1);
    // Whole, or in pieces the input chooses (at most 64 of them, to stay fast).
    const size =
      (data[0] ?? 0) % 2 === 0 ? body.length || 1 : Math.max(1 + (data[0]! >> 1), Math.ceil(body.length / 64));
    for (let i = 0; i < body.length && !control.closed; i += size) {
      stream.push(body.subarray(i, i + size));
      await new Promise((r) => setImmediate(r));
      const buffered = control['buffered'].length;
      if (buffered > MAX_LINE + size) throw new Error(`the control channel buffers ${buffered} characters of one line`);
    }
    // Handlers may answer a tick later.
    await new Promise((r) => setImmediate(r));
    stream.push(null);
    await new Promise((r) => setImmediate(r));
    control.close();
    const answer = await ours;
    for (const line of written.join('').split('\n').filter(Boolean)) {
      const msg = JSON.parse(line) as { error?: unknown };
      if (STACK_FRAME.test(line)) throw new Error(`an answer carries a stack frame: ${line}`);
      if (msg.error !== undefined) assertOneLine(String(msg.error), 'an error answer');
    }
    if (!reason) throw new Error('the channel did not report why it closed');
    assertOneLine(reason.message, 'the close reason');
    if (answer instanceof Error) assertOneLine(answer.message, "our request's failure");
  },
};
