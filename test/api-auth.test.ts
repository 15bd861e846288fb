import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import { API_AUTH, cleanup, startClient, startServer } from './helpers/procs.js';

const basic = (auth: string) => `Basic ${Buffer.from(auth).toString('base64')}`;
const [USER, PASSWORD] = API_AUTH.split(':') as [string, string];

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One request with the path sent byte for byte as given: fetch and URL would resolve dot segments and
 * normalise what an attacker sends on purpose.
 */
function raw(port: number, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method, path, headers: { connection: 'close', ...headers }, timeout: 10_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${path}: no answer within 10s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const json = (o: unknown) => ({ 'content-type': 'application/json', body: JSON.stringify(o) });

async function login(port: number, username = USER, password = PASSWORD): Promise<Answer> {
  const { body, ...h } = json({ username, password });
  return raw(port, 'POST', '/api/v1/login', h, body);
}

test('issue 1: percent-encoded paths to the API and /metrics without credentials are refused', async (t) => {
  const server = await startServer(t);
  for (const path of ['/%61pi/v1/clients', '/api/v1/%63lients', '/%6detrics', '/%61%70%69/v1/status', '/api/v1/%65vents']) {
    const r = await raw(server.apiPort, 'GET', path);
    assert.equal(r.status, 401, `${path}: ${r.status} ${r.body.slice(0, 200)}`);
    assert.doesNotMatch(r.body, /"data"|rport_/, path);
  }
  // Unknown paths answer 401 before 404: nothing about the route table leaks without credentials.
  assert.equal((await raw(server.apiPort, 'GET', '/api/v1/nothing')).status, 401);
  assert.equal((await raw(server.apiPort, 'GET', '/api/v1/nothing', { authorization: basic(API_AUTH) })).status, 404);
});

test('basic auth is throttled per source and account: ban checked before the password, 429 with Retry-After, a success clears only its own account', async (t) => {
  const server = await startServer(t, ['--max-failed-login', '3']);
  const get = (auth: string) => raw(server.apiPort, 'GET', '/api/v1/status', { authorization: basic(auth) });
  // Another name from the same address fails twice; the real user's success must not clear that count.
  for (let i = 0; i < 2; i++) assert.equal((await get('guest:nope')).status, 401);
  for (let i = 0; i < 2; i++) assert.equal((await get(`${USER}:wrong`)).status, 401);
  assert.equal((await get(API_AUTH)).status, 200);
  assert.equal((await get('guest:nope')).status, 401);
  const guest = await get('guest:nope');
  assert.equal(guest.status, 429, 'the third failure of guest banned it despite admin logging in between');

  // Three failures in a row ban the pair: the right password is refused too, since the ban is checked first.
  for (let i = 0; i < 3; i++) assert.equal((await get(`${USER}:wrong`)).status, 401);
  const banned = await get(API_AUTH);
  assert.equal(banned.status, 429);
  const retry = Number(banned.headers['retry-after']);
  assert.ok(retry > 3500 && retry <= 3600, `Retry-After: ${banned.headers['retry-after']}`);
  const err = JSON.parse(banned.body).error;
  assert.equal(err.code, 'too_many_failed_logins');
  assert.match(err.message, /"admin" from 127\.0\.0\.1.*try again after \d{4}-\d\d-\d\dT/);
  // The same ban covers POST /login for that user (one throttle, one account name)...
  assert.equal((await login(server.apiPort)).status, 429);
  // ...but not the clients behind the same address: their ids are other accounts.
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'same-address']);
  await client.waitFor(/ping to 127\.0\.0\.1:\d+ succeeded/);

  // A bounded number of lines for all of that: the first failure, and the first ban with its count
  // (the rest are summed up in one line a minute later).
  const failures = server.proc.lines.filter((l) => /failed API login/.test(l));
  assert.equal(failures.length, 1, `failure lines:\n${failures.join('\n')}`);
  const bans = server.proc.lines.filter((l) => /banned for/.test(l));
  assert.equal(bans.length, 1, server.proc.output);
  assert.match(bans[0]!, /"guest" from 127\.0\.0\.1: 3 failed logins, banned for 1h/);
});

test('issue 2: a flood of failed logins writes a bounded number of log lines', async (t) => {
  const server = await startServer(t, ['--max-failed-login', '1000']);
  for (let i = 0; i < 40; i++) {
    assert.equal((await login(server.apiPort, `user${i}`, 'wrong')).status, 401);
    assert.equal((await raw(server.apiPort, 'GET', '/api/v1/clients', { authorization: basic(`user${i}:wrong`) })).status, 401);
  }
  const failures = server.proc.lines.filter((l) => /failed API login/.test(l));
  assert.ok(failures.length >= 1 && failures.length <= 2, `${failures.length} failure lines:\n${failures.join('\n')}`);
});

test('tokens: logout revokes the presented token and ends its event stream; the oldest tokens are evicted past the cap', async (t) => {
  const server = await startServer(t);
  const port = server.apiPort;
  const token = JSON.parse((await login(port)).body).data.token as string;
  const bearer = { authorization: `Bearer ${token}` };
  assert.equal((await raw(port, 'GET', '/api/v1/status', bearer)).status, 200);

  // An event stream opened with this token must not outlive it.
  const streamEnded = new Promise<number>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: `/api/v1/events?token=${encodeURIComponent(token)}` }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end();
    cleanup(t, () => req.destroy());
  });
  assert.equal((await raw(port, 'DELETE', '/api/v1/logout', bearer)).status, 204);
  assert.equal(await streamEnded, 200);
  assert.equal((await raw(port, 'GET', '/api/v1/status', bearer)).status, 401);
  assert.equal((await raw(port, 'GET', `/api/v1/events?token=${encodeURIComponent(token)}`)).status, 401);
  // Logging out needs a token to revoke: basic auth has none.
  assert.equal((await raw(port, 'POST', '/api/v1/logout', { authorization: basic(API_AUTH) })).status, 400);

  const tokens: string[] = [];
  for (let i = 0; i < 21; i++) tokens.push(JSON.parse((await login(port)).body).data.token);
  assert.equal((await raw(port, 'GET', '/api/v1/status', { authorization: `Bearer ${tokens[0]}` })).status, 401, 'the oldest token was evicted');
  for (const tk of tokens.slice(1)) assert.equal((await raw(port, 'GET', '/api/v1/status', { authorization: `Bearer ${tk}` })).status, 200);
});

test('security headers on the dashboard and the API, no CORS, no inline script, body size limit', async (t) => {
  const server = await startServer(t);
  const page = await raw(server.apiPort, 'GET', '/');
  assert.equal(page.status, 200);
  const csp = String(page.headers['content-security-policy']);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.match(csp, /script-src 'self'(;|$)/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(page.headers['x-frame-options'], 'DENY');
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  assert.equal(page.headers['referrer-policy'], 'no-referrer');
  assert.doesNotMatch(page.body, /<script>|<style>| on\w+=/, 'no inline script or style: the CSP would block it');
  for (const asset of [...page.body.matchAll(/(?:src|href)="(\/[^"]+)"/g)].map((m) => m[1]!)) {
    assert.equal((await raw(server.apiPort, 'GET', asset)).status, 200, asset);
  }

  const api = await raw(server.apiPort, 'GET', '/api/v1/status', { authorization: basic(API_AUTH), origin: 'http://evil.example' });
  assert.equal(api.status, 200);
  assert.equal(api.headers['x-content-type-options'], 'nosniff');
  assert.equal(api.headers['cache-control'], 'no-store');
  assert.equal(api.headers['access-control-allow-origin'], undefined);
  const preflight = await raw(server.apiPort, 'OPTIONS', '/api/v1/clients', { origin: 'http://evil.example', 'access-control-request-method': 'DELETE' });
  assert.ok(preflight.status >= 400, `preflight: ${preflight.status}`);
  assert.equal(preflight.headers['access-control-allow-origin'], undefined);

  const big = JSON.stringify({ username: USER, password: 'x'.repeat(20_000) });
  const tooBig = await raw(server.apiPort, 'POST', '/api/v1/login', { 'content-type': 'application/json' }, big);
  assert.equal(tooBig.status, 413);
  assert.equal(JSON.parse(tooBig.body).error.code, 'bad_request');
  // Without credentials the body is not even read: 401 before 413.
  assert.equal((await raw(server.apiPort, 'POST', '/api/v1/credentials', { 'content-type': 'application/json' }, big)).status, 401);
});
