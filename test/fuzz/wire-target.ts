// Raw bytes after the WebSocket upgrade, against a real rportd process on 127.0.0.1: before SSH auth
// (mutated SSH identification and key exchange packets, garbage) and after it (bytes on the control
// subsystem's channel). After each batch the server must be alive, must have logged no stack frame, and a
// real client must still get in.
import fc from 'fast-check';
import WebSocket from 'ws';
import { CONTROL_SUBSYSTEM, WS_SUBPROTOCOL } from '../../src/transport/protocol.js';
import { CLIENT_AUTH, type ServerHandle } from '../../harness/procs.js';
import { connectRequest, rawLink, rawSsh, requestConnect } from '../helpers/raw-client.js';
import { STACK_FRAME, type Target } from './engine.js';

const PRE_AUTH = 0;
const POST_AUTH = 1;
/** How long a fuzzed connection may stay open: the server answers garbage long before. */
const LINGER_MS = 300;

const nameList = (names: string[]) => {
  const s = Buffer.from(names.join(','));
  const n = Buffer.alloc(4);
  n.writeUInt32BE(s.length);
  return Buffer.concat([n, s]);
};

/** An SSH binary packet (RFC 4253 6) without MAC: length, padding length, payload, padding. */
function packet(payload: Buffer): Buffer {
  const pad = 8 - ((payload.length + 5) % 8) + (payload.length + 5 < 16 ? 8 : 0);
  const head = Buffer.alloc(5);
  head.writeUInt32BE(payload.length + pad + 1);
  head[4] = pad;
  return Buffer.concat([head, payload, Buffer.alloc(pad)]);
}

/** The client's identification and a KEXINIT like ssh2's, with the algorithm lists the input chooses. */
const kexinit = fc
  .tuple(
    fc.constantFrom(
      'SSH-2.0-ssh2js1.17.0\r\n',
      'SSH-2.0-OpenSSH_9.6\r\n',
      'SSH-1.99-x\r\n',
      'SSH-2.0-\r\n',
      'SSH-3.0-x\r\n',
      'garbage line\r\nSSH-2.0-x\r\n',
    ),
    fc.array(fc.constantFrom('curve25519-sha256', 'ecdh-sha2-nistp256', 'diffie-hellman-group14-sha256', 'none', 'x'), {
      minLength: 0,
      maxLength: 3,
    }),
    fc.array(fc.constantFrom('ssh-ed25519', 'rsa-sha2-256', 'ssh-rsa', 'none'), { maxLength: 2 }),
    fc.array(fc.constantFrom('aes128-gcm@openssh.com', 'aes128-ctr', 'chacha20-poly1305@openssh.com', 'none'), {
      maxLength: 2,
    }),
    fc.array(fc.constantFrom('hmac-sha2-256', 'none'), { maxLength: 2 }),
    fc.uint8Array({ maxLength: 64 }),
  )
  .map(([ident, kex, hostKey, cipher, mac, tail]) => {
    const lists = [kex, hostKey, cipher, cipher, mac, mac, ['none'], ['none'], [], []].map(nameList);
    const body = packet(
      Buffer.concat([Buffer.from([20]), Buffer.alloc(16, 7), ...lists, Buffer.from([0, 0, 0, 0, 0])]),
    );
    return Buffer.concat([Buffer.from(ident), body, tail]);
  });

const controlLines = fc
  .array(
    fc.oneof(
      fc.json({ maxDepth: 2 }),
      fc.constantFrom(
        'null',
        '1',
        '"x"',
        '{"method":"connect"}',
        '{"method":"ping","params":null}',
        '{"id":1,"method":"connect","params":null}',
      ),
      fc.string({ maxLength: 30 }),
    ),
    { maxLength: 6 },
  )
  .map((lines) => Buffer.from(lines.join('\n') + '\n'));

const generate = fc
  .oneof(
    fc.tuple(
      fc.constant(PRE_AUTH),
      fc.nat(255),
      fc.oneof(kexinit, kexinit, fc.uint8Array({ maxLength: 512 }).map(Buffer.from)),
    ),
    fc.tuple(fc.constant(POST_AUTH), fc.nat(255), controlLines),
  )
  .map(([mode, split, body]) => Buffer.concat([Buffer.from([mode, split]), body]));

/** Sends the bytes in WebSocket frames of the size the input chooses, then waits until the server closes or LINGER_MS passed. */
function preAuth(port: number, split: number, body: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/`, WS_SUBPROTOCOL, { perMessageDeflate: false });
    const timer = setTimeout(() => ws.terminate(), LINGER_MS);
    ws.on('error', () => undefined);
    ws.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    ws.on('open', () => {
      const size = split === 0 ? body.length || 1 : split;
      for (let i = 0; i < body.length && ws.readyState === WebSocket.OPEN; i += size)
        ws.send(body.subarray(i, i + size));
    });
  });
}

/** Logs in as a client would, opens the control subsystem and writes the bytes on it. */
function postAuth(port: number, body: Buffer): Promise<void> {
  const [user, password] = CLIENT_AUTH.split(':') as [string, string];
  const { ssh, closed } = rawSsh(port, user, (_methods, _partial, next) =>
    next({ type: 'password', username: user, password } as never),
  );
  const timer = setTimeout(() => ssh.end(), LINGER_MS);
  ssh.on('ready', () =>
    ssh.subsys(CONTROL_SUBSYSTEM, (err, stream) => {
      if (err) return ssh.end();
      stream.on('error', () => undefined);
      stream.write(body);
    }),
  );
  return closed.finally(() => clearTimeout(timer));
}

export function wireTarget(server: ServerHandle): Target {
  let checks = 0;
  return {
    name: 'wire',
    generate,
    dictionary: [
      'SSH-2.0-',
      '\r\n',
      '\n',
      '\x00\x00\x00',
      '\x14',
      '\x15',
      '\x1e',
      '\x32',
      'curve25519-sha256',
      'ssh-ed25519',
      'none',
      ',',
      '{',
      '}',
      '"method":',
      '"connect"',
      'null',
    ],
    maxLen: 8 << 10,
    cover: /$^/,
    parallel: 8,
    async run(data) {
      const body = data.subarray(2);
      if ((data[0] ?? 0) % 2 === POST_AUTH) await postAuth(server.port, body);
      else await preAuth(server.port, data[1] ?? 0, body);
    },
    async check() {
      if (server.proc.exit)
        throw new Error(
          `rportd exited (${JSON.stringify(server.proc.exit)}):\n${server.proc.lines.slice(-20).join('\n')}`,
        );
      const frame = server.proc.lines.find((l) => STACK_FRAME.test(l));
      if (frame) throw new Error(`rportd logged a stack frame: ${frame}\n${server.proc.lines.slice(-20).join('\n')}`);
      // A real client still gets in, and its id is new each time: no stale session stands in the way.
      const link = await rawLink(server.port, CLIENT_AUTH);
      try {
        await requestConnect(link, connectRequest(`fuzz-check-${checks++}`, process.pid));
      } finally {
        link.close();
      }
    },
  };
}
