#!/usr/bin/env node
// `npm start`: a local demo with embedded defaults. One rportd on 127.0.0.1 with its data in ./demo-data,
// and one rport client connected to it with the watchdog integration on, both printing what they do.
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../files.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const dataDir = resolve(process.env.RPORT_DEMO_DIR ?? 'demo-data');

/** The preferred port when it is free, else any free one. */
function port(preferred: number): Promise<number> {
  return new Promise((res) => {
    const s = createServer();
    s.once('error', () => {
      const any = createServer();
      any.listen(0, '127.0.0.1', () => {
        const p = (any.address() as { port: number }).port;
        any.close(() => res(p));
      });
    });
    s.listen(preferred, '127.0.0.1', () => s.close(() => res(preferred)));
  });
}

function start(name: string, args: string[], onLine: (line: string) => void): ChildProcess {
  const child = spawn(process.execPath, [join(here, `${name}.js`), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let partial = '';
  const take = (b: Buffer) => {
    const parts = (partial + b.toString()).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      process.stdout.write(`[${name.padEnd(6)}] ${line}\n`);
      onLine(line);
    }
  };
  child.stdout!.on('data', take);
  child.stderr!.on('data', take);
  child.on('error', (err) => process.stderr.write(`[${name.padEnd(6)}] cannot run: ${err.message}\n`));
  return child;
}

// A web page "behind the NAT": only the client's side can reach it, the demo tunnel makes it public.
const web = createHttpServer((req, res) => res.end(`Hello from behind the NAT (you asked for ${req.url})\n`));
await new Promise<void>((r) => web.listen(0, '127.0.0.1', r));
const webPort = (web.address() as { port: number }).port;

const serverPort = await port(8080);
const apiPort = await port(3000);
const clientSecret = randomBytes(9).toString('base64url');
const apiPassword = randomBytes(9).toString('base64url');
// Private whatever the umask: rportd refuses a data_dir that its group or others can write.
for (const d of ['server', 'client']) {
  mkdirSync(join(dataDir, d), { recursive: true });
  chmodSync(join(dataDir, d), 0o700);
}

let client: ChildProcess | undefined;
let announced = false;

/** The demo tunnel, through the API as an operator would open it. */
async function openTunnel(): Promise<string> {
  const res = await fetch(
    `http://127.0.0.1:${apiPort}/api/v1/clients/demo-client/tunnels?remote=127.0.0.1:${webPort}&local=127.0.0.1:0`,
    {
      method: 'PUT',
      headers: { authorization: `Basic ${Buffer.from(`admin:${apiPassword}`).toString('base64')}` },
    },
  );
  const body = (await res.json()) as { data?: { local: string }; errors?: Array<{ title: string }> };
  return body.data ? `curl http://${body.data.local}/` : `(not opened: ${body.errors?.[0]?.title})`;
}
// The secrets go in config files only the user can read: on a command line, ps would show them to everyone.
const serverConf = join(dataDir, 'server', 'rportd.conf');
const clientConf = join(dataDir, 'client', 'rport.conf');
writeFileAtomic(
  serverConf,
  `[server]\nauth = ${JSON.stringify(`demo-client:${clientSecret}`)}\n[api]\nauth = ${JSON.stringify(`admin:${apiPassword}`)}\n`,
  { mode: 0o600 },
);
writeFileAtomic(clientConf, `[client]\nauth = ${JSON.stringify(`demo-client:${clientSecret}`)}\n`, { mode: 0o600 });
const server = start(
  'rportd',
  [
    '-c',
    serverConf,
    '--address',
    `127.0.0.1:${serverPort}`,
    '--api-address',
    `127.0.0.1:${apiPort}`,
    '--data-dir',
    join(dataDir, 'server'),
  ],
  (line) => {
    const fp = /host key fingerprint (SHA256:\S+)/.exec(line);
    if (!fp || client) return;
    client = start(
      'rport',
      [
        '-c',
        clientConf,
        '--server',
        `127.0.0.1:${serverPort}`,
        '--fingerprint',
        fp[1]!,
        '--id',
        'demo-client',
        '--name',
        'demo',
        '--tags',
        'demo',
        '--keep-alive',
        '10s',
        '--watchdog-integration',
        '--data-dir',
        join(dataDir, 'client'),
      ],
      (l) => {
        if (/connected to \S+ within/.test(l) && !announced) {
          announced = true;
          void openTunnel().then((tunnel) =>
            process.stdout.write(`
  rport demo is running.
    dashboard:  http://127.0.0.1:${apiPort}/   user admin, password ${apiPassword}
    tunnel:     ${tunnel}   (rportd's port -> the client -> a web page only the client can reach)
    clients:    curl -u admin:${apiPassword} http://127.0.0.1:${apiPort}/api/v1/clients
    state.json: ${join(dataDir, 'client', 'state.json')} (rewritten on every ping, every 10s)
    try:        kill -STOP ${server.pid} (freeze the server; the client notices within keep_alive + keep_alive_timeout), then kill -CONT ${server.pid}
  Ctrl-C stops both.

`),
          );
        }
      },
    );
  },
);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  client?.kill('SIGTERM');
  server.kill('SIGTERM');
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
server.on('exit', (code) => {
  if (!stopping) {
    process.stdout.write(`rportd exited with code ${code}\n`);
    stop();
  }
  web.close();
  const done = () => process.exit(0);
  if (client && client.exitCode === null) client.once('exit', done);
  else done();
});
