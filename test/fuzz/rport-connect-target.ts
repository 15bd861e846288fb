// A stock RPort client's new_connection payload (bytes from the peer) -> parseRportConnectionRequest: rport's
// form of it within every bound, or a Refusal in one line that names the field or says it is not JSON.
import fc from 'fast-check';
import { parseRportConnectionRequest } from '../../src/server/connect-request.js';
import { Refusal } from '../../src/server/refusal.js';
import { check } from './connect-target.js';
import { assertOneLine, type Target } from './engine.js';

const FIELDS = [
  'ID',
  'Name',
  'SessionID',
  'OS',
  'OSArch',
  'OSKernel',
  'Version',
  'Hostname',
  'Tags',
  'Labels',
  'Remotes',
  'IPv4',
];
const valid = {
  ID: 'c1',
  Name: 'c1',
  SessionID: 's1',
  OS: 'Linux',
  OSArch: 'amd64',
  OSKernel: 'linux',
  Version: '0.9.13',
  Hostname: 'h',
  Tags: ['a'],
  Labels: null,
  Remotes: [{ lhost: '0.0.0.0', lport: '2222', rhost: '127.0.0.1', rport: '22' }],
};
const remote = fc.dictionary(
  fc.constantFrom('lhost', 'lport', 'rhost', 'rport', 'protocol'),
  fc.oneof(fc.jsonValue({ maxDepth: 1 }), fc.string({ minLength: 250, maxLength: 300 })),
  { maxKeys: 3 },
);

// A valid request with some fields replaced by anything JSON can carry (Remotes by lists of odd tunnels).
const generate = fc
  .dictionary(
    fc.constantFrom(...FIELDS, '__proto__'),
    fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      fc.string({ minLength: 190, maxLength: 300 }),
      fc.array(fc.string({ maxLength: 3 }), { minLength: 99, maxLength: 258 }),
      fc.array(remote, { maxLength: 4 }),
    ),
    { maxKeys: 3 },
  )
  .map((over) => Buffer.from(JSON.stringify({ ...valid, ...over })));

export const rportConnectTarget: Target = {
  name: 'rport-connect',
  generate,
  dictionary: [
    ...FIELDS.map((f) => `"${f}":`),
    '"lport":',
    '"rhost":',
    'null',
    '[]',
    '{}',
    '""',
    '1e400',
    '-1',
    ',',
    '"__proto__":',
    'true',
    '"a"',
  ],
  maxLen: 64 << 10,
  cover: /\/dist\/src\/server\/connect-request/,
  run(data) {
    let r;
    try {
      r = parseRportConnectionRequest(data).request;
    } catch (err) {
      if (!(err instanceof Refusal))
        throw new Error(`not a Refusal but ${err instanceof Error ? err.stack : String(err)}`);
      assertOneLine(err.message, 'the refusal');
      if (!/connection request field "\w+"|the connection request is not (JSON|a JSON object)/.test(err.message))
        throw new Error(`the refusal names no field: ${err.message}`);
      return;
    }
    check(r);
  },
};
