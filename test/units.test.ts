import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Backoff } from '../src/client/backoff.js';
import { formatDuration, formatNanos, parseDuration } from '../src/shared/duration.js';
import { parseServerUrl } from '../src/config/server-url.js';
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
    assert.ok(waits.every((w) => w <= 10_000), `capped: ${waits}`);
    assert.ok(waits.slice(5).every((w) => w >= 8_000), `reaches the cap: ${waits}`);
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
  await assert.rejects(withTimeout(new Promise(() => {}), 5, 'stuck step', () => (tornDown = true)), (err: unknown) => err instanceof TimeoutError && err.message === 'stuck step timed out after 5ms');
  assert.ok(tornDown, 'onTimeout ran');
  assert.equal(new TimeoutError('ping request', 1234.4).message, 'ping request timed out after 1.234s');
});
