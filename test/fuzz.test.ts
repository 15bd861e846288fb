// The fuzz targets (test/fuzz/): npm test replays each corpus and fuzzes each target for a few seconds;
// `npm run fuzz` runs them for longer (FUZZ_SECONDS per target) and keeps new inputs in the corpus.
// A failure prints the input (base64) and, with FUZZ_SAVE=1, saves it under test/fuzz/crashes/.
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import test from 'node:test';
import { CLIENT_KEYS, clientConfig } from '../src/config/client-config.js';
import { ConfigError, loadConfig } from '../src/config/loader.js';
import { MAX_TIMER_MS } from '../src/timeout.js';
import { ControlChannel } from '../src/transport/control-channel.js';
import { CONTROL_SUBSYSTEM } from '../src/transport/protocol.js';
import { stopApi, apiTarget } from './fuzz/api-target.js';
import { configTarget } from './fuzz/config-target.js';
import { connectTarget } from './fuzz/connect-target.js';
import { rportConnectTarget } from './fuzz/rport-connect-target.js';
import { controlTarget } from './fuzz/control-target.js';
import { fuzz, readCorpus, STACK_FRAME, type Options, type Target } from './fuzz/engine.js';
import { wireTarget } from './fuzz/wire-target.js';
import { CLIENT_AUTH, cleanup, patient, startServer, tmpDir, writeFile } from '../harness/procs.js';
import { connectRequest, rawLink, rawSsh, requestConnect } from './helpers/raw-client.js';

const seconds = Number(process.env.FUZZ_SECONDS ?? 3);
const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
const options: Options = {
  seconds,
  maxRuns: Number(process.env.FUZZ_MAX_RUNS ?? Infinity),
  seed,
  coverage: true,
  save: process.env.FUZZ_SAVE === '1',
};
const only = process.env.FUZZ_TARGETS?.split(',');
const LIMIT = { timeout: patient(60_000) + seconds * 2000 };

async function pass(t: test.TestContext, target: Target): Promise<void> {
  const corpus = readCorpus(target.name).length;
  const r = await fuzz(target, options);
  t.diagnostic(
    `${target.name}: seed ${seed}, ${r.replayed} corpus inputs replayed, ${r.runs} new inputs in ${seconds}s, ${r.added} added, ${r.blocks} blocks covered`,
  );
  assert.ok(r.replayed === corpus && corpus > 0, `${target.name}: the corpus (${corpus} inputs) was replayed`);
}

for (const target of [configTarget, controlTarget, connectTarget, rportConnectTarget, apiTarget]) {
  test(
    `fuzz ${target.name}: corpus replay and ${seconds}s of coverage-guided inputs`,
    { ...LIMIT, skip: only && !only.includes(target.name) },
    async (t) => {
      if (target === apiTarget) t.after(stopApi);
      await pass(t, target);
    },
  );
}

test(
  `fuzz wire (raw bytes after the WebSocket upgrade, a real rportd): corpus replay and ${seconds}s`,
  { ...LIMIT, skip: only && !only.includes('wire') },
  async (t) => {
    const server = await startServer(t, ['--log-level', 'info']);
    await pass(t, wireTarget(server));
  },
);

// Crashes the fuzzers found, each also in the corpus (regression-* files).

test('regression: a control message that is JSON null closes the channel with one line instead of throwing out of the stream', async () => {
  const stream = new PassThrough();
  const control = new ControlChannel(stream, 200);
  const closed = new Promise<Error>((resolve) => control.on('close', resolve));
  stream.write('null\n');
  assert.equal((await closed).message, 'control message from the peer is not a JSON object');
});

test(
  'regression: a connection request sent as a notification (no id) and refused does not end rportd',
  LIMIT,
  async (t) => {
    const server = await startServer(t, ['--log-level', 'info']);
    const [user, password] = CLIENT_AUTH.split(':') as [string, string];
    const { ssh, closed } = rawSsh(server.port, user, (_m, _p, next) =>
      next({ type: 'password', username: user, password } as never),
    );
    ssh.on('ready', () =>
      ssh.subsys(CONTROL_SUBSYSTEM, (err, stream) => {
        assert.ifError(err);
        stream.write('{"method":"connect","params":{"id":"x"}}\n');
      }),
    );
    await server.proc.waitFor(
      /refused a connection request from 127\.0\.0\.1 as client1: connection request field "pid" must be an integer/,
    );
    ssh.end();
    await closed;
    const link = await rawLink(server.port, CLIENT_AUTH);
    cleanup(t, () => link.close());
    await requestConnect(link, connectRequest('after-notification', process.pid));
    assert.equal(server.proc.exit, undefined, 'rportd is still running');
    assert.ok(!server.proc.lines.some((l) => STACK_FRAME.test(l)), 'no stack frame in the log');
  },
);

test('regression: a duration longer than a timer can wait (24.8 days) is refused with one line naming the key, not fired after 1 ms', (t) => {
  const dir = tmpDir(t, 'rport-fuzz-');
  const file = writeFile(
    dir,
    'rport.conf',
    '[client]\nserver = "127.0.0.1:8080"\nauth = "c1:pw"\n[connection]\nkeep_alive = "1000h"\n',
  );
  assert.throws(
    () => clientConfig(loadConfig(CLIENT_KEYS, file, new Map())),
    (err: Error) =>
      err instanceof ConfigError &&
      err.message ===
        `${file}: [connection] keep_alive = "1000h" is longer than 24 days, more than a timer can wait (use e.g. '24h')`,
  );
  const ok = writeFile(
    dir,
    'ok.conf',
    '[client]\nserver = "127.0.0.1:8080"\nauth = "c1:pw"\n[connection]\nkeep_alive = "576h"\n',
  );
  assert.ok(clientConfig(loadConfig(CLIENT_KEYS, ok, new Map())).keepAliveMs <= MAX_TIMER_MS, '24 days is accepted');
});
