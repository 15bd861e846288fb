import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import { test, type TestContext } from 'node:test';
import { apiRoutes } from '../src/api/api-server.js';
import { safeEqual } from '../src/server/credentials.js';
import { MAX_TOKENS, MAX_TOKENS_PER_USER, TOKEN_TTL_MS, Tokens } from '../src/api/tokens.js';
import { apiApp, rawRequest } from './helpers/api-app.js';
import { startClientInProcess, startServerInProcess } from './helpers/in-process.js';
import { API_AUTH, cleanup, eventually, tmpDir } from '../harness/procs.js';

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
const raw = (
  port: number,
  method: string,
  path: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<Answer> => rawRequest(port, method, path, headers, body);

const json = (o: unknown) => ({ 'content-type': 'application/json', body: JSON.stringify(o) });

async function login(port: number, username = USER, password = PASSWORD): Promise<Answer> {
  const { body, ...h } = json({ username, password });
  return raw(port, 'POST', '/api/v1/login', h, body);
}

test('issue 1: percent-encoded paths to the API and /metrics without credentials are refused', async (t) => {
  const server = await startServerInProcess(t);
  for (const path of [
    '/%61pi/v1/clients',
    '/api/v1/%63lients',
    '/%6detrics',
    '/%61%70%69/v1/status',
    '/api/v1/%65vents',
  ]) {
    const r = await raw(server.apiPort, 'GET', path);
    assert.equal(r.status, 401, `${path}: ${r.status} ${r.body.slice(0, 200)}`);
    assert.doesNotMatch(r.body, /"data"|rport_/, path);
  }
  // Unknown paths answer 401 before 404: nothing about the route table leaks without credentials.
  assert.equal((await raw(server.apiPort, 'GET', '/api/v1/nothing')).status, 401);
  assert.equal((await raw(server.apiPort, 'GET', '/api/v1/nothing', { authorization: basic(API_AUTH) })).status, 404);
});

test('basic auth is throttled per source and account: ban checked before the password, 429 with Retry-After, a success clears only its own account', async (t) => {
  const server = await startServerInProcess(t, ['--api-max-failed-login', '3']);
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
  const err = JSON.parse(banned.body).errors[0];
  assert.equal(err.code, 'too_many_failed_logins');
  assert.match(err.title, /"admin" from 127\.0\.0\.1.*try again after \d{4}-\d\d-\d\dT/);
  // The same ban covers POST /login for that user (one throttle, one account name)...
  assert.equal((await login(server.apiPort)).status, 429);
  // ...but not the clients behind the same address: their ids are other accounts.
  const client = startClientInProcess(t, `127.0.0.1:${server.port}`, ['--id', 'same-address']);
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
  const server = await startServerInProcess(t, ['--api-max-failed-login', '1000']);
  for (let i = 0; i < 40; i++) {
    assert.equal((await login(server.apiPort, `user${i}`, 'wrong')).status, 401);
    assert.equal(
      (await raw(server.apiPort, 'GET', '/api/v1/clients', { authorization: basic(`user${i}:wrong`) })).status,
      401,
    );
  }
  const failures = server.proc.lines.filter((l) => /failed API login/.test(l));
  assert.ok(failures.length >= 1 && failures.length <= 2, `${failures.length} failure lines:\n${failures.join('\n')}`);
});

test('tokens: logout revokes the presented token and ends its event stream; the oldest tokens are evicted past the cap', async (t) => {
  const server = await startServerInProcess(t);
  const port = server.apiPort;
  const token = JSON.parse((await login(port)).body).data.token as string;
  const bearer = { authorization: `Bearer ${token}` };
  assert.equal((await raw(port, 'GET', '/api/v1/status', bearer)).status, 200);

  // An event stream opened with this token must not outlive it.
  const streamEnded = new Promise<number>((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path: `/api/v1/events?token=${encodeURIComponent(token)}` },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode!));
      },
    );
    req.on('error', reject);
    req.end();
    cleanup(t, () => req.destroy());
  });
  assert.equal((await raw(port, 'DELETE', '/api/v1/logout', bearer)).status, 204);
  assert.equal(await streamEnded, 200);
  const stale = await raw(port, 'GET', '/api/v1/status', bearer);
  assert.equal(stale.status, 401);
  assert.match(String(stale.headers['www-authenticate']), /^Bearer .*invalid_token/);
  assert.equal((await raw(port, 'GET', `/api/v1/events?token=${encodeURIComponent(token)}`)).status, 401);
  // Logging out needs a token to revoke: basic auth has none.
  assert.equal((await raw(port, 'POST', '/api/v1/logout', { authorization: basic(API_AUTH) })).status, 400);

  const tokens: string[] = [];
  for (let i = 0; i < 21; i++) tokens.push(JSON.parse((await login(port)).body).data.token);
  assert.equal(
    (await raw(port, 'GET', '/api/v1/status', { authorization: `Bearer ${tokens[0]}` })).status,
    401,
    'the oldest token was evicted',
  );
  for (const tk of tokens.slice(1))
    assert.equal((await raw(port, 'GET', '/api/v1/status', { authorization: `Bearer ${tk}` })).status, 200);
});

test('security headers on the dashboard and the API, no CORS, no inline script, body size limit', async (t) => {
  const server = await startServerInProcess(t);
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

  // Refusals carry the headers too: the security headers come before the auth check.
  const refused = await raw(server.apiPort, 'GET', '/api/v1/status');
  assert.equal(refused.status, 401);
  assert.equal(refused.headers['x-frame-options'], 'DENY');
  assert.equal(refused.headers['content-security-policy'], csp);
  const api = await raw(server.apiPort, 'GET', '/api/v1/status', {
    authorization: basic(API_AUTH),
    origin: 'http://evil.example',
  });
  assert.equal(api.status, 200);
  assert.equal(api.headers['x-content-type-options'], 'nosniff');
  assert.equal(api.headers['cache-control'], 'no-store');
  assert.equal(api.headers['access-control-allow-origin'], undefined);
  const preflight = await raw(server.apiPort, 'OPTIONS', '/api/v1/clients', {
    origin: 'http://evil.example',
    'access-control-request-method': 'DELETE',
  });
  assert.ok(preflight.status >= 400, `preflight: ${preflight.status}`);
  assert.equal(preflight.headers['access-control-allow-origin'], undefined);

  const big = JSON.stringify({ username: USER, password: 'x'.repeat(20_000) });
  const tooBig = await raw(server.apiPort, 'POST', '/api/v1/login', { 'content-type': 'application/json' }, big);
  assert.equal(tooBig.status, 413);
  assert.equal(JSON.parse(tooBig.body).errors[0].code, 'bad_request');
  // Without credentials the body is not even read: 401 before 413.
  assert.equal(
    (await raw(server.apiPort, 'POST', '/api/v1/credentials', { 'content-type': 'application/json' }, big)).status,
    401,
  );
});

/** The API app in this process, with a real store, listening on loopback: so the test can ask it for its routes. */
async function inProcessApi(t: TestContext, logIntervalMs?: number) {
  const { app, logFile } = apiApp(tmpDir(t, 'rport-api-'), { logIntervalMs });
  await app.listen({ host: '127.0.0.1', port: 0 });
  cleanup(t, () => app.close());
  return { app, port: (app.server.address() as { port: number }).port, logFile };
}

/** Status and (for refusals) body; a stream that was wrongly opened is cut at once. */
const probe = (port: number, method: string, path: string, headers: Record<string, string>) =>
  rawRequest(port, method, path, headers, '', (res) => res.statusCode! < 400);

const hex = (ch: string) => `%${ch.charCodeAt(0).toString(16).toUpperCase()}`;

/** What an attacker sends instead of the plain path, hoping the router and the auth check read it differently. */
function variants(path: string): string[] {
  const segs = path.split('/').slice(1);
  const join = (parts: string[]) => '/' + parts.join('/');
  const out = new Set<string>([path]);
  segs.forEach((seg, i) => {
    if (!seg) return;
    const swap = (s: string) => join(segs.map((x, j) => (j === i ? s : x)));
    out.add(swap(hex(seg[0]!) + seg.slice(1))); // %61pi
    out.add(swap(hex(seg[0]!).toLowerCase() + seg.slice(1))); // %6d
    out.add(swap('%25' + hex(seg[0]!).slice(1) + seg.slice(1))); // %2561pi
    out.add(swap(seg.toUpperCase()));
    out.add(swap(seg + ';x'));
    out.add(swap(seg + '%00'));
  });
  out.add(join(segs.map((seg) => [...seg].map(hex).join(''))));
  out.add('/x/..' + path);
  out.add('/x/%2e%2e' + path);
  out.add('/.' + path);
  out.add(path.replace(/\/([^/]*)$/, '/./$1'));
  out.add(path.replace(/\/([^/]*)$/, '/z/../$1'));
  out.add('/' + path);
  out.add(path.replaceAll('/', '//'));
  out.add(path + '/');
  out.add(path.toUpperCase());
  out.add('/' + segs.join('\\'));
  out.add('/' + segs.join('%2F'));
  out.add(path + '#x');
  out.add(path + '?token=forged');
  out.add(path + '%zz'); // not decodable
  out.add('http://127.0.0.1' + path); // absolute form, as to a proxy
  return [...out];
}

const WRONG: Array<[string, Record<string, string>]> = [
  ['no credentials', {}],
  ['wrong password', { authorization: basic(`${USER}:wrong`) }],
  ['empty password', { authorization: basic(`${USER}:`) }],
  ['password as user', { authorization: basic(`${PASSWORD}:${USER}`) }],
  ['garbage basic', { authorization: 'Basic !!!' }],
  ['forged bearer', { authorization: 'Bearer forged' }],
  ['empty bearer', { authorization: 'Bearer ' }],
];

const PUBLIC = [
  'GET /',
  'HEAD /',
  'GET /dashboard.css',
  'HEAD /dashboard.css',
  'GET /dashboard.js',
  'HEAD /dashboard.js',
  'GET /dashboard-commands.js',
  'HEAD /dashboard-commands.js',
  'POST /api/v1/login',
];

test('issue 1, table-driven: every registered route, under every path variant, refuses requests without or with wrong credentials', async (t) => {
  const { app, port } = await inProcessApi(t);
  const routes = apiRoutes(app);
  assert.ok(
    routes.some((r) => r.url === '/metrics') && routes.some((r) => r.url === '/api/v1/events'),
    'the route list comes from the app',
  );
  // A new public route is a decision to make here, in the open.
  assert.deepEqual(
    routes
      .filter((r) => r.public)
      .map((r) => `${r.method} ${r.url}`)
      .sort(),
    [...PUBLIC].sort(),
  );
  const closed = routes.filter((r) => !r.public);
  // Unknown paths too: 401 before any 404, so probing learns nothing.
  closed.push(
    { method: 'GET', url: '/api/v1/nothing', public: false },
    { method: 'GET', url: '/nothing', public: false },
    { method: 'OPTIONS', url: '/api/v1/clients', public: false },
  );

  let tried = 0;
  for (const r of closed) {
    const path = r.url.replace(/:[a-z_]+/g, 'x');
    // The route answers the right credentials: so the refusals below come from auth, not from a wrong path.
    if (!r.url.includes('nothing') && r.method !== 'OPTIONS') {
      const ok = await probe(port, r.method, path, { authorization: basic(API_AUTH) });
      assert.ok(
        ![401, 403, 429].includes(ok.status),
        `${r.method} ${path} with the right credentials: ${ok.status} ${ok.body}`,
      );
    }
    for (const p of variants(path)) {
      for (const [what, headers] of WRONG) {
        const res = await probe(port, r.method, p, headers);
        tried++;
        assert.ok(
          res.status >= 400,
          `${r.method} ${p} (${what}) answered ${res.status}: route ${r.method} ${r.url} is open`,
        );
        assert.doesNotMatch(
          res.body,
          /"data"|rport_|event:/,
          `${r.method} ${p} (${what}) leaked: ${res.body.slice(0, 200)}`,
        );
      }
    }
  }
  t.diagnostic(`${closed.length} routes, ${tried} refused requests`);
  // An encoded variant does reach its route: with the right credentials it is answered.
  assert.equal((await probe(port, 'GET', '/%61pi/v1/clients', { authorization: basic(API_AUTH) })).status, 200);
});

test('issue 2: repeated failure lines are summed up with their count when the interval ends', async (t) => {
  const { port, logFile } = await inProcessApi(t, 2000);
  // Sent together, so that they fall into one interval even on a slow machine.
  const all = await Promise.all(
    Array.from({ length: 20 }, (_, i) =>
      probe(port, 'GET', '/api/v1/status', { authorization: basic(`user${i}:wrong`) }),
    ),
  );
  assert.ok(all.every((r) => r.status === 401));
  const lines = () =>
    readFileSync(logFile, 'utf8')
      .split('\n')
      .filter((l) => /failed API login/.test(l));
  // Every failure is in the log, as a line of its own or in a count.
  const accounted = () => lines().reduce((n, l) => n + Number(/(\d+) more like this/.exec(l)?.[1] ?? 1), 0);
  await eventually(() => (accounted() === 20 ? true : undefined), 10_000, 'all 20 failures accounted for in the log');
  assert.ok(lines().length <= 4, lines().join('\n'));
  assert.match(
    lines().join('\n'),
    /\d+ more like this in the last 2s \(api-login-failed\); the last: failed API login as "user\d+" from 127\.0\.0\.1/,
  );
});

test('tokens expire after TOKEN_TTL_MS, are capped per user and in all (oldest first), and compare in constant time', () => {
  let now = 1_000_000;
  const tokens = new Tokens(() => now);
  const first = tokens.issue('a').token;
  now += TOKEN_TTL_MS - 1;
  assert.equal(tokens.valid(first), true);
  now += 1;
  assert.equal(tokens.valid(first), false, 'expired');

  const mine = Array.from({ length: MAX_TOKENS_PER_USER + 1 }, () => tokens.issue('a').token);
  assert.equal(tokens.valid(mine[0]!), false, 'the oldest of the user is evicted');
  assert.ok(mine.slice(1).every((tk) => tokens.valid(tk)));
  const others = Array.from({ length: MAX_TOKENS }, (_, i) => tokens.issue(`u${i}`).token);
  assert.ok(
    mine.every((tk) => !tokens.valid(tk)),
    'the oldest in all are evicted',
  );
  assert.ok(others.every((tk) => tokens.valid(tk)));
  let ended = 0;
  tokens.watch(others[0]!, () => ended++);
  assert.equal(tokens.revoke(others[0]!), true);
  assert.equal(tokens.revoke(others[0]!), false);
  assert.equal(ended, 1);

  assert.equal(safeEqual('apipass', 'apipass'), true);
  assert.equal(safeEqual('apipass', 'apipas'), false);
  assert.equal(safeEqual('', 'x'.repeat(10_000)), false);
});
