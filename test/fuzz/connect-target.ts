// A connection request's params (JSON from the peer) -> validateConnectRequest: a request within every
// bound, or a Refusal naming the field in one line; nothing else.
import fc from 'fast-check';
import { validateConnectRequest } from '../../src/server/connect-request.js';
import { Refusal } from '../../src/server/refusal.js';
import { connectRequest } from '../helpers/raw-client.js';
import { assertOneLine, type Target } from './engine.js';

const FIELDS = [
  'id',
  'name',
  'tags',
  'hostname',
  'os',
  'arch',
  'version',
  'pid',
  'processStart',
  'remotes',
  'watchdog',
];
const watchdog = { integration: true, systemd_watchdog_sec: null, heartbeat_budget_sec: 5, last_state: 'connected' };

// A valid request with some fields replaced by anything JSON can carry.
const generate = fc
  .tuple(
    fc.dictionary(
      fc.constantFrom(...FIELDS, 'last_state', '__proto__'),
      fc.oneof(
        fc.jsonValue({ maxDepth: 2 }),
        fc.string({ minLength: 190, maxLength: 300 }),
        fc.array(fc.string({ maxLength: 3 }), { minLength: 99, maxLength: 258 }),
      ),
      { maxKeys: 3 },
    ),
    fc.boolean(),
  )
  .map(([over, wd]) => Buffer.from(JSON.stringify({ ...connectRequest('c1', 42, wd ? { watchdog } : {}), ...over })));

/** Every field of an accepted request within its bound. */
export function check(r: ReturnType<typeof validateConnectRequest>): void {
  const str = (k: keyof typeof r, max: number) => {
    if (typeof r[k] !== 'string' || (r[k] as string).length > max)
      throw new Error(`accepted a request whose ${k} is ${JSON.stringify(r[k])?.slice(0, 80)}`);
  };
  str('id', 200);
  // An empty id is valid: the client has none of its own and the server assigns one (src/server/connect-request.ts).
  for (const k of ['name', 'hostname'] as const) str(k, 256);
  for (const k of ['os', 'arch', 'version'] as const) str(k, 64);
  for (const [k, max] of [
    ['tags', 100],
    ['remotes', 256],
  ] as const) {
    if (!Array.isArray(r[k]) || r[k].length > max || r[k].some((s) => typeof s !== 'string' || s.length > 256))
      throw new Error(`accepted ${k} out of bounds`);
  }
  if (!Number.isSafeInteger(r.pid) || !Number.isSafeInteger(r.processStart))
    throw new Error('accepted a pid or processStart that is not an integer');
  if (r.watchdog && (typeof r.watchdog.last_state !== 'string' || r.watchdog.last_state.length > 32))
    throw new Error('accepted a watchdog last_state out of bounds');
}

export const connectTarget: Target = {
  name: 'connect',
  generate,
  dictionary: [
    ...FIELDS.map((f) => `"${f}":`),
    'null',
    '[]',
    '{}',
    '""',
    '1e400',
    '-1',
    '9007199254740993',
    ',',
    '"__proto__":',
    'true',
    '"a"',
  ],
  maxLen: 64 << 10,
  cover: /\/dist\/src\/server\/connect-request/,
  run(data) {
    let params: unknown;
    try {
      params = JSON.parse(data.toString('utf8'));
    } catch {
      params = data.toString('utf8'); // the peer may send any JSON, a string included
    }
    let r;
    try {
      r = validateConnectRequest(params);
    } catch (err) {
      if (!(err instanceof Refusal))
        throw new Error(`not a Refusal but ${err instanceof Error ? err.stack : String(err)}`);
      assertOneLine(err.message, 'the refusal');
      if (!/connection request field "\w+"/.test(err.message))
        throw new Error(`the refusal names no field: ${err.message}`);
      return;
    }
    check(r);
  },
};
