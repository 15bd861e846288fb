import assert from 'node:assert/strict';
import { Duplex, PassThrough } from 'node:stream';
import { test } from 'node:test';
import { Backoff } from '../src/client/backoff.js';
import { formatDuration, formatNanos, parseDuration } from '../src/shared/duration.js';
import { parseServerUrl } from '../src/config/server-url.js';
import { ConfigError, loadConfig, type KeyDef } from '../src/config/loader.js';
import { escapeControls } from '../src/log.js';
import { formatBan, LoginThrottle, memoryRecords, SOURCE_FACTOR } from '../src/server/login-throttle.js';
import {
  AddressRules,
  formatHostPort,
  parseHostPort,
  parseRemoteSpec,
  type HostPort,
} from '../src/shared/host-port.js';
import { ControlChannel, MAX_LINE, RemoteError } from '../src/transport/control-channel.js';
import { fingerprintMatches, loadHostKey } from '../src/transport/host-key.js';
import ssh2 from 'ssh2';
import { tmpDir, writeFile } from '../harness/procs.js';
import { goTimestamp } from '../src/shared/go-time.js';
import { deadline, MAX_TIMER_MS, TimeoutError, withTimeout } from '../src/timeout.js';

test('Go durations parse as Go parses them', () => {
  assert.equal(parseDuration('3m'), 180_000);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('0s'), 0);
  assert.equal(parseDuration('0'), 0);
  assert.equal(parseDuration('1.5s'), 1500);
  assert.equal(parseDuration('100us'), 0.1);
  for (const bad of ['3 minutes', '3', '', 'm', '1x', '3m ', '1h 30m', '.s']) {
    assert.equal(parseDuration(bad === '3m ' ? '3m x' : bad), undefined, bad);
  }
});

test("durations print as Go's time.Duration.String()", () => {
  assert.equal(formatNanos(14_682_823), '14.682823ms');
  assert.equal(formatDuration(5000), '5s');
  assert.equal(formatDuration(90_000), '1m30s');
  assert.equal(formatDuration(3_600_000), '1h0m0s');
  assert.equal(formatDuration(60_000), '1m0s');
  assert.equal(formatDuration(1500), '1.5s');
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatNanos(1500), '1.5µs');
  assert.equal(formatNanos(999), '999ns');
  assert.equal(formatDuration(1234.567), '1.234567s');
  assert.equal(formatDuration(-2000), '-2s');
});

test('backoff grows from about 1 s, doubles, and never exceeds max_retry_interval', () => {
  for (const r of [0, 0.5, 0.999]) {
    const b = new Backoff(10_000, () => r);
    const waits = Array.from({ length: 8 }, () => b.next());
    assert.ok(waits[0]! >= 800 && waits[0]! <= 1000, `first wait ${waits[0]}`);
    for (let i = 1; i < 4; i++) assert.ok(waits[i]! > waits[i - 1]!, `grows: ${waits}`);
    assert.ok(
      waits.every((w) => w <= 10_000),
      `capped: ${waits}`,
    );
    assert.ok(
      waits.slice(5).every((w) => w >= 8_000),
      `reaches the cap: ${waits}`,
    );
  }
  const b = new Backoff(5000, () => 0);
  b.next();
  b.next();
  b.reset();
  assert.equal(b.next(), 1000);
});

test('server addresses: host:port, ws://, wss://, http(s):// as RPort writes them', () => {
  assert.equal(parseServerUrl('example.com:8080')?.href, 'ws://example.com:8080/');
  assert.equal(parseServerUrl('wss://example.com')?.href, 'wss://example.com:443/');
  assert.equal(parseServerUrl('https://example.com:8443/x')?.href, 'wss://example.com:8443/x');
  assert.equal(parseServerUrl('[::1]:8080')?.host, '::1');
  assert.equal(parseServerUrl('example.com')?.href, 'ws://example.com:80/', 'no port: 80, as RPort');
  assert.equal(parseServerUrl('ftp://example.com:21'), undefined);
});

test('state.json times are RFC 3339 with fraction and offset, as Go prints them', () => {
  const saved = process.env.TZ;
  try {
    // A zone with a half-hour offset, then UTC (Go prints "Z" there, not "+00:00").
    process.env.TZ = 'Asia/Kolkata';
    assert.equal(goTimestamp(1660552645643839), '2022-08-15T14:07:25.643839+05:30');
    assert.equal(goTimestamp(1660552645000000), '2022-08-15T14:07:25+05:30', 'no fraction when it is zero');
    assert.equal(goTimestamp(1660552645100000), '2022-08-15T14:07:25.1+05:30', 'trailing zeros dropped');
    process.env.TZ = 'UTC';
    assert.equal(goTimestamp(1660552645643839), '2022-08-15T08:37:25.643839Z');
  } finally {
    if (saved === undefined) delete process.env.TZ;
    else process.env.TZ = saved;
  }
});

test('deadline(): fires once after its time with a TimeoutError, and not when cancelled', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const fired: string[] = [];
  deadline(1000, 'short', (err) => fired.push(err.message));
  deadline(1000, 'cancelled', (err) => fired.push(err.message)).cancel();
  t.mock.timers.tick(999);
  assert.deepEqual(fired, []);
  t.mock.timers.tick(1);
  assert.deepEqual(fired, ['short timed out after 1s']);
  t.mock.timers.tick(10_000);
  assert.deepEqual(fired, ['short timed out after 1s']);
});

test('deadline(): waits past the 24.8-day timer limit in steps', (t) => {
  // The mock, like Node.js, fires a longer timer after 1 ms; it runs one step's timer per tick, so ticks are whole steps.
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const fired: string[] = [];
  const days90 = 90 * 86_400_000;
  deadline(days90, 'token', (err) => fired.push(err.message));
  let elapsed = 0;
  while (elapsed + MAX_TIMER_MS < days90) {
    t.mock.timers.tick(MAX_TIMER_MS);
    elapsed += MAX_TIMER_MS;
    assert.deepEqual(fired, [], `the 90-day deadline fired after ${elapsed} ms`);
  }
  t.mock.timers.tick(days90 - elapsed - 1);
  assert.deepEqual(fired, [], 'the 90-day deadline fired 1 ms early');
  t.mock.timers.tick(1);
  assert.deepEqual(fired, ['token timed out after 2160h0m0s']);
});

test('withTimeout(): the work settles it, or a TimeoutError in the one duration format', async () => {
  assert.equal(await withTimeout(Promise.resolve(7), 1000, 'quick'), 7);
  let tornDown = false;
  await assert.rejects(
    withTimeout(new Promise(() => {}), 5, 'stuck step', () => (tornDown = true)),
    (err: unknown) => err instanceof TimeoutError && err.message === 'stuck step timed out after 5ms',
  );
  assert.ok(tornDown, 'onTimeout ran');
  assert.equal(new TimeoutError('ping request', 1234.4).message, 'ping request timed out after 1.234s');
});

test('host:port and remote specs, table-driven, as RPort writes them', () => {
  const hostPorts: Array<[string, HostPort | undefined]> = [
    ['127.0.0.1:8080', { host: '127.0.0.1', port: 8080 }],
    [':3000', { host: '0.0.0.0', port: 3000 }],
    ['[::1]:22', { host: '::1', port: 22 }],
    ['example.com:65535', { host: 'example.com', port: 65535 }],
    ['example.com:65536', undefined],
    ['example.com', undefined],
    ['::1:22', undefined],
    ['host:22x', undefined],
  ];
  for (const [text, want] of hostPorts) assert.deepEqual(parseHostPort(text), want, text);
  assert.equal(formatHostPort({ host: '::1', port: 22 }), '[::1]:22');
  assert.equal(formatHostPort({ host: '10.0.0.1', port: 22 }), '10.0.0.1:22');

  const specs: Array<[string, string | undefined]> = [
    ['3389', ':0 -> 127.0.0.1:3389'],
    ['2222:22', ':2222 -> 127.0.0.1:22'],
    ['8080:10.0.0.5:80', ':8080 -> 10.0.0.5:80'],
    ['0.0.0.0:8080:127.0.0.1:80', '0.0.0.0:8080 -> 127.0.0.1:80'],
    ['R:2222:22', ':2222 -> 127.0.0.1:22'],
    ['8080:[::1]:80', ':8080 -> ::1:80'],
    ['0', undefined],
    ['70000', undefined],
    ['a:b', undefined],
    ['1:2:3:4:5', undefined],
    ['', undefined],
  ];
  for (const [text, want] of specs) {
    const r = parseRemoteSpec(text);
    assert.equal(r && `${r.local.host}:${r.local.port} -> ${r.remote.host}:${r.remote.port}`, want, text);
  }
});

test('address rules, table-driven: CIDR, address, :port, CIDR:port, IPv6, IPv4-mapped peers', () => {
  const cases: Array<[string[], string, number | undefined, boolean]> = [
    [[], '203.0.113.9', 22, true], // empty allows all, as RPort's tunnel_allowed
    [['10.0.0.0/8'], '10.1.2.3', 22, true],
    [['10.0.0.0/8'], '11.0.0.1', 22, false],
    [['192.168.1.5'], '192.168.1.5', 80, true],
    [['192.168.1.5'], '192.168.1.6', 80, false],
    [['10.0.0.0/8:22'], '10.0.0.1', 22, true],
    [['10.0.0.0/8:22'], '10.0.0.1', 23, false],
    [[':3389'], '8.8.8.8', 3389, true],
    [[':3389'], '8.8.8.8', 22, false],
    [['::1'], '::1', 22, true],
    [['fd00::/8'], 'fd12::1', 22, true],
    [['[::1]:22'], '::1', 22, true],
    [['[::1]:22'], '::1', 80, false],
    [['127.0.0.0/8'], '::ffff:127.0.0.1', 22, true],
  ];
  for (const [rules, ip, port, want] of cases)
    assert.equal(AddressRules.parse(rules).allows(ip, port), want, `${JSON.stringify(rules)} ${ip}:${port}`);
  for (const bad of ['10.0.0.0/33', 'not-an-address', '10.0.0.0/8:x', '::1/129']) {
    assert.throws(
      () => AddressRules.parse([bad]),
      new RegExp(`"${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}" is not an address`),
      bad,
    );
  }
});

test("the loader's converters, table-driven: each type from TOML and from a flag", (t) => {
  const defs: KeyDef[] = (['string', 'duration', 'seconds', 'int', 'bool', 'strings', 'table'] as const).map(
    (type) => ({ section: 's', key: type, type, default: '', help: '' }),
  );
  const dir = tmpDir(t);
  const fromToml = (key: string, toml: string) => {
    const file = writeFile(dir, `${key}.toml`, `[s]\n${key} = ${toml}\n`);
    try {
      return loadConfig(defs, file, new Map()).get('s', key);
    } catch (err) {
      return err instanceof ConfigError ? 'error' : `threw ${String(err)}`;
    }
  };
  const fromFlag = (key: string, text: string) => {
    try {
      return loadConfig(defs, undefined, new Map([[key, [text]]])).get('s', key);
    } catch (err) {
      return err instanceof ConfigError ? 'error' : `threw ${String(err)}`;
    }
  };
  const toml: Array<[string, string, unknown]> = [
    ['string', '"x"', 'x'],
    ['string', '1', 'error'],
    ['duration', '"1m30s"', 90_000],
    ['duration', '0', 0],
    ['duration', '30', 'error'],
    ['duration', '"-1s"', 'error'],
    ['duration', '"soon"', 'error'],
    ['seconds', '30', 30_000],
    ['seconds', '"30"', 30_000],
    ['seconds', '"2m"', 120_000],
    ['int', '5', 5],
    ['int', '5.5', 'error'],
    ['int', '"5"', 'error'],
    ['bool', 'true', true],
    ['bool', '"true"', 'error'],
    ['strings', '["a", "b"]', ['a', 'b']],
    ['strings', '"a,b"', 'error'],
    ['strings', '["a", 1]', 'error'],
    ['table', '["Name: v", "X=y"]', { Name: 'v', X: 'y' }],
    ['table', '{ A = "b" }', { A: 'b' }],
    ['table', '["no separator"]', 'error'],
    ['table', '{ A = 1 }', 'error'],
  ];
  for (const [key, text, want] of toml) assert.deepEqual(fromToml(key, text), want, `TOML ${key} = ${text}`);
  const flags: Array<[string, string, unknown]> = [
    ['string', 'x', 'x'],
    ['duration', '250ms', 250],
    ['duration', '250', 'error'],
    ['seconds', '7', 7000],
    ['int', '-1', -1],
    ['int', '1e3', 'error'],
    ['bool', 'true', true],
    ['bool', 'yes', 'error'],
    ['strings', 'a, b,,c', ['a', 'b', 'c']],
    ['table', 'User-Agent: x', { 'User-Agent': 'x' }],
    ['table', 'nothing', 'error'],
  ];
  for (const [key, text, want] of flags) assert.deepEqual(fromFlag(key, text), want, `--${key} ${text}`);
});

test('the login throttle with an injected clock: counted before the check, per pair, unknown ids per source, realms apart, forgetting after ban_time', () => {
  let now = 1_000_000;
  const th = new LoginThrottle(3, 60_000, { now: () => now });
  /** One attempt that fails at a known id. */
  const fail = (source: string, account: string) => {
    const a = th.begin(source, account);
    return a.bannedMs > 0 ? `refused ${a.bannedMs}` : th.failed(source, a, true);
  };
  const steps: Array<[string, () => unknown, unknown]> = [
    ['1st failure', () => fail('1.2.3.4', 'a'), undefined],
    ['2nd failure', () => fail('1.2.3.4', 'a'), undefined],
    ['not banned yet', () => th.bannedFor('1.2.3.4', 'a'), 0],
    ['3rd failure bans the pair', () => fail('1.2.3.4', 'a'), 'account'],
    ['the pair is banned for ban_time', () => th.bannedFor('1.2.3.4', 'a'), 60_000],
    ['a 4th attempt is refused unchecked', () => fail('1.2.3.4', 'a'), 'refused 60000'],
    ['another id from the same source may try', () => th.bannedFor('1.2.3.4', 'b'), 0],
    ['the same id from another source may try', () => th.bannedFor('5.6.7.8', 'a'), 0],
    ['59 s pass', () => void (now += 59_000), undefined],
    ['1 s left', () => th.bannedFor('1.2.3.4', 'a'), 1000],
    ['ban over', () => ((now += 1000), th.bannedFor('1.2.3.4', 'a')), 0],
  ];
  for (const [what, step, want] of steps) assert.deepEqual(step(), want, what);

  // Parallel attempts: each is counted when it starts, so the 4th is refused before the first three finish.
  const par = new LoginThrottle(3, 60_000, { now: () => now });
  const started = Array.from({ length: 10 }, () => par.begin('2.2.2.2', 'x'));
  assert.deepEqual(
    started.map((a) => a.bannedMs > 0),
    [false, false, false, true, true, true, true, true, true, true],
  );
  assert.deepEqual(
    started.slice(0, 3).map((a) => a.last),
    [false, false, true],
  );
  // An attempt that could not be checked (busy) gives its count back.
  const busy = new LoginThrottle(2, 60_000, { now: () => now });
  busy.begin('3.3.3.3', 'x');
  busy.cancel('3.3.3.3', 'x');
  busy.begin('3.3.3.3', 'x');
  assert.equal(busy.begin('3.3.3.3', 'x').last, true, 'the cancelled attempt was not counted');

  // A source spraying over unknown ids is banned from unknown ids after max_failed_login x SOURCE_FACTOR failures.
  const spray = new LoginThrottle(3, 60_000, { now: () => now });
  const kinds = Array.from({ length: 3 * SOURCE_FACTOR }, (_, i) =>
    spray.failed('9.9.9.9', spray.begin('9.9.9.9', `id${i}`), false),
  );
  assert.deepEqual(kinds.slice(0, -1).filter(Boolean), []);
  assert.equal(kinds.at(-1), 'source');
  assert.equal(spray.sourceBannedFor('9.9.9.9'), 60_000);
  assert.equal(spray.bannedFor('9.9.9.9', 'fresh-id'), 0, 'an id whose own record is clean is not banned');
  // Failures at known ids never ban the source.
  const known = new LoginThrottle(3, 60_000, { now: () => now });
  for (let i = 0; i < 3 * SOURCE_FACTOR; i++) known.failed('8.8.8.8', known.begin('8.8.8.8', `k${i}`), true);
  assert.equal(known.sourceBannedFor('8.8.8.8'), 0);

  // Client logins and API logins in one store: neither bans the other.
  const records = memoryRecords();
  const clients = new LoginThrottle(1, 60_000, { records, realm: 'clients', now: () => now });
  const api = new LoginThrottle(1, 60_000, { records, realm: 'api', now: () => now });
  for (let i = 0; i < 4; i++) api.failed('7.7.7.7', api.begin('7.7.7.7', `admin${i}`), false);
  api.failed('7.7.7.7', api.begin('7.7.7.7', 'admin'), true);
  assert.ok(api.bannedFor('7.7.7.7', 'admin') > 0 && api.sourceBannedFor('7.7.7.7') > 0);
  assert.equal(clients.bannedFor('7.7.7.7', 'admin'), 0);
  assert.equal(clients.sourceBannedFor('7.7.7.7'), 0);

  // A success clears its own pair only; failures older than ban_time are forgotten.
  const th2 = new LoginThrottle(2, 60_000, { now: () => now });
  const fail2 = (account: string) => th2.failed('1.1.1.1', th2.begin('1.1.1.1', account), true);
  fail2('a');
  th2.begin('1.1.1.1', 'a');
  th2.succeeded('1.1.1.1', 'a');
  assert.equal(fail2('a'), undefined, 'the count restarted after the success');
  now += 60_001;
  assert.equal(fail2('a'), undefined, 'the old failure was forgotten');
  assert.equal(fail2('a'), 'account');
  assert.equal(formatBan(1), '1s');
  assert.equal(formatBan(61_001), '1m2s');

  // Checks under way are counted in memory: a successful login writes nothing to the store (rportd's is the
  // database, whose lock would otherwise hold up every API request), only failures are written.
  const writes: string[] = [];
  const inner = memoryRecords();
  const watched = new LoginThrottle(3, 60_000, {
    now: () => now,
    records: {
      get: (k) => inner.get(k),
      set: (k, r) => (writes.push('set'), inner.set(k, r)),
      clear: (k) => (writes.push('clear'), inner.clear(k)),
    },
  });
  for (let i = 0; i < 5; i++) {
    watched.begin('4.4.4.4', 'ok');
    watched.succeeded('4.4.4.4', 'ok');
  }
  assert.deepEqual(writes, [], 'successful logins wrote to the store');
  watched.failed('4.4.4.4', watched.begin('4.4.4.4', 'ok'), true);
  assert.deepEqual(writes, ['set']);
});

test('log escaping, table-driven: what changes how a line reads is escaped, every script and emoji stays', () => {
  const cases: Array<[string, string]> = [
    ['tab\tstays', 'tab\tstays'],
    ['a\nb\rc', 'a\\nb\\rc'],
    ['\x1b[2J\x00\x7f\x85', '\\x1b[2J\\x00\\x7f\\x85'],
    ['\u2028\u2029', '\\u2028\\u2029'],
    ['evil\u202egnp.exe', 'evil\\u202egnp.exe'],
    [
      '\u202a\u202b\u202c\u202d\u2066\u2067\u2068\u2069\u200e\u200f\u061c',
      '\\u202a\\u202b\\u202c\\u202d\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c',
    ],
    ['zero\u200bwidth\u2060\ufeff\u00ad', 'zero\\u200bwidth\\u2060\\ufeff\\xad'],
    ['tag \u{e0041}', 'tag \\u{e0041}'],
    ['lone \ud800', 'lone \\ud800'],
    ['é 中文 עברית العربية 😀', 'é 中文 עברית العربية 😀'],
  ];
  for (const [raw, want] of cases) assert.equal(escapeControls(raw), want, JSON.stringify(raw));
});

test('control channel framing, table-driven: split and joined lines, limits, garbage, answers', async () => {
  /** A pair of connected duplex streams: what one writes, the other reads. */
  const pair = () => {
    const a = new PassThrough();
    const b = new PassThrough();
    return { near: Duplex.from({ readable: a, writable: b }), far: { write: (s: string) => a.write(s), read: b } };
  };
  // Chunkings of the same two requests: each must be seen as exactly two messages.
  const msgs = [
    JSON.stringify({ id: 1, method: 'echo', params: { x: 'a' } }),
    JSON.stringify({ id: 2, method: 'echo', params: { x: 'b\n' } }),
  ];
  const whole = msgs.join('\n') + '\n';
  const chunkings: Array<[string, string[]]> = [
    ['one chunk', [whole]],
    ['byte by byte', [...whole]],
    ['split inside a line', [whole.slice(0, 10), whole.slice(10)]],
    ['empty lines between', ['\n\n' + msgs[0] + '\n\n', msgs[1] + '\n']],
  ];
  for (const [what, chunks] of chunkings) {
    const { near, far } = pair();
    const ch = new ControlChannel(near);
    ch.handle('echo', (p) => p);
    let out = '';
    far.read.on('data', (b: Buffer) => (out += b.toString()));
    for (const c of chunks) far.write(c);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      out
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
      [
        { id: 1, result: { x: 'a' } },
        { id: 2, result: { x: 'b\n' } },
      ],
      what,
    );
    ch.close();
  }
  // What ends the channel, and the reason it gives.
  const endings: Array<[string, string, RegExp]> = [
    ['not JSON', 'hello\n', /is not JSON/],
    ['not an object', '[1,2]\n', /is not a JSON object/],
    ['a line over MAX_LINE', 'x'.repeat(MAX_LINE + 1), /over 256 KiB/],
  ];
  for (const [what, text, why] of endings) {
    const { near, far } = pair();
    const ch = new ControlChannel(near);
    const closed = new Promise<Error>((r) => ch.once('close', r));
    const pending = ch.request('ping', {}, 5000);
    far.write(text);
    assert.match((await closed).message, why, what);
    await assert.rejects(pending, why, `${what}: a pending request fails with the reason`);
  }
  // Answers: a result, a remote error, an unknown method, and a late answer ignored.
  const { near, far } = pair();
  const ch = new ControlChannel(near);
  const asked: string[] = [];
  far.read.on('data', (b: Buffer) => asked.push(...b.toString().trim().split('\n')));
  const ok = ch.request('a', {}, 5000);
  const bad = ch.request('b', {}, 5000);
  far.write(
    '{"id":1,"result":{"v":1}}\n{"id":2,"error":"refused: no"}\n{"id":99,"result":0}\n{"id":7,"method":"nothing"}\n',
  );
  assert.deepEqual(await ok, { v: 1 });
  await assert.rejects(bad, (e: unknown) => e instanceof RemoteError && e.message === 'refused: no');
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(asked.map((l) => JSON.parse(l)).at(-1), { id: 7, error: 'unknown method nothing' });
  ch.close();
});

test("key_seed gives RPort's host key (the MD5 fingerprints openrport 0.9.13's rportd logs for these seeds); RPort's MD5 form matches by a prefix of 12 bytes or more", () => {
  for (const [seed, md5] of [
    ['abc-seed-123', '45:f3:be:90:08:bd:85:e5:72:52:77:14:4c:af:f9:62'],
    ['interop-key-seed', '4c:6e:d5:6c:3a:76:ae:e8:9c:8f:97:5b:64:74:e7:04'],
  ] as const) {
    const key = loadHostKey('/nonexistent', seed);
    assert.equal(key.md5Fingerprint, md5, seed);
    const parsed = ssh2.utils.parseKey(key.privateKey);
    const blob = (Array.isArray(parsed) ? parsed[0]! : (parsed as ssh2.ParsedKey)).getPublicSSH();
    const cases: Array<[string, boolean]> = [
      [md5, true],
      [md5.toUpperCase(), true],
      [md5.slice(0, 35), true],
      [` ${md5.slice(0, 41)} `, true],
      [key.fingerprint, true],
      [key.fingerprint.slice(7, 30), true],
      // Shorter than 12 bytes pins no key, even where it is a true prefix.
      [md5.slice(0, 11), false],
      [md5.slice(0, 32), false],
      ['00:11:22:33:44:55:66:77:88:99:aa:bb', false],
      [md5.slice(0, 35).replace(/.$/, md5[34] === '0' ? '1' : '0'), false],
    ];
    for (const [expected, ok] of cases) assert.equal(fingerprintMatches(expected, blob), ok, `${seed}: "${expected}"`);
  }
});
