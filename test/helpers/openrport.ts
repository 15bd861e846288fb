import { connect } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { OPENRPORT_BIN, openrportMissing, openrportdConf } from '../../harness/openrport.js';
import {
  accepting,
  API_AUTH,
  CLIENT_AUTH,
  freePort,
  patient,
  runProgram,
  tmpDir,
  writeFile,
  type Proc,
} from '../../harness/procs.js';

export { OPENRPORT_BIN };

/** false when both binaries are there, else why the tests that need them are skipped (said once per file). */
export function openrportSkip(file: string): string | false {
  const skip = openrportMissing() ?? false;
  if (skip) console.log(`# ${file}: skipped: ${skip}`);
  return skip;
}

export interface RealServer {
  proc: Proc;
  port: number;
  apiPort: number;
  /** RPort's MD5 fingerprint, from its start-up log. */
  fingerprint: string;
  /** A call to its REST API with HTTP basic auth ([api] auth). */
  api(method: string, path: string): Promise<{ status: number; body: any }>;
}

/** A real RPort rportd on loopback with this key_seed; `fixed` keeps ports and data_dir across a restart. */
export async function realServer(
  t: TestContext,
  seed: string,
  fixed?: { port: number; apiPort: number; dir: string },
): Promise<RealServer> {
  const dir = fixed?.dir ?? tmpDir(t, 'openrportd-');
  const port = fixed?.port ?? (await freePort());
  const apiPort = fixed?.apiPort ?? (await freePort());
  const conf = writeFile(
    dir,
    'rportd.conf',
    openrportdConf({ port, apiPort, seed, auth: CLIENT_AUTH, apiAuth: API_AUTH, dir, logLevel: 'debug' }),
  );
  const proc = runProgram(t, join(OPENRPORT_BIN, 'rportd'), ['-c', conf]);
  const m = await proc.waitFor(/Fingerprint ((?:[0-9a-f]{2}:){15}[0-9a-f]{2})/, 20_000);
  await proc.waitFor(/API Listening on/, 20_000);
  // RPort logs that line before it binds the port.
  await accepting(apiPort, proc, 20_000);
  await accepting(port, proc, 20_000);
  const api = async (method: string, path: string) => {
    const r = await fetch(`http://127.0.0.1:${apiPort}${path}`, {
      method,
      headers: {
        authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}`,
        'content-type': 'application/json',
      },
      signal: AbortSignal.timeout(10_000),
    });
    const text = await r.text();
    return { status: r.status, body: text ? JSON.parse(text) : undefined };
  };
  return { proc, port, apiPort, fingerprint: m[1]!, api };
}

/**
 * Sends `data` through the tunnel and resolves with what came back once `expect` bytes did (how: "complete"),
 * or how the connection ended before. No half-close: RPort's client closes both ways at the first EOF.
 */
export function exchange(port: number, data: Buffer, expect: number): Promise<{ how: string; got: Buffer }> {
  return new Promise((resolve) => {
    const sock = connect(port, '127.0.0.1', () => sock.write(data));
    const got: Buffer[] = [];
    let n = 0;
    const done = (how: string) => {
      resolve({ how, got: Buffer.concat(got) });
      sock.destroy();
    };
    sock.on('data', (b) => {
      got.push(b);
      n += b.length;
      if (n >= expect) done('complete');
    });
    sock.once('end', () => done('end'));
    sock.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    sock.setTimeout(patient(20_000), () => done('timeout'));
  });
}
