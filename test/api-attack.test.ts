import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { ApiError } from '../src/api/errors.js';
import { MAX_TOKENS_PER_USER, Tokens } from '../src/api/tokens.js';
import { rawRequest } from './helpers/api-app.js';
import { startClientInProcess, startServerInProcess } from './helpers/in-process.js';
import { API_AUTH, eventually, startClient, startServer, tmpDir } from '../harness/procs.js';

// Issue 21's attacks on the API, sent as an attacker sends them: raw HTTP on loopback.

const basic = { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}` };
const [USER, PASSWORD] = API_AUTH.split(':') as [string, string];
const FORM = { 'content-type': 'application/x-www-form-urlencoded' };
const JSON_BODY = { 'content-type': 'application/json' };
const title = (body: string) => (JSON.parse(body) as { errors: Array<{ title: string }> }).errors[0]!.title;

test('issue 21 finding 5 (CSRF): a form post from another site with cached basic auth changes nothing; forms only on /login; same-origin JSON works', async (t) => {
  const server = await startServerInProcess(t);
  const port = server.apiPort;
  const own = `http://127.0.0.1:${port}`;
  const credential = async (id: string) => (await rawRequest(port, 'GET', `/api/v1/clients-auth/${id}`, basic)).status;

  // A command for a connected client, as the issue's attack sent it: refused before anything runs.
  const files = tmpDir(t);
  const client = startClientInProcess(t, `127.0.0.1:${server.port}`, ['--id', 'c1']);
  await client.waitFor(/ping to 127\.0\.0\.1:\d+ succeeded/);
  let r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients/c1/commands',
    { ...basic, ...FORM, origin: 'http://evil.example' },
    `command=/usr/bin/touch+${files}/evil`,
  );
  assert.equal(r.status, 403, r.body);
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients/c1/commands',
    { ...basic, ...FORM },
    `command=/usr/bin/touch+${files}/evil`,
  );
  assert.equal(r.status, 415, r.body);
  // A command sent as JSON by a program (no Origin) runs; once it has, the refused ones have not.
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients/c1/commands',
    { ...basic, ...JSON_BODY },
    JSON.stringify({ command: `/usr/bin/touch ${files}/good` }),
  );
  assert.equal(r.status, 200, r.body);
  await eventually(() => (existsSync(join(files, 'good')) ? true : undefined), 15_000, 'the JSON command ran');
  assert.ok(!existsSync(join(files, 'evil')), 'a cross-site form ran a command');

  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...JSON_BODY },
    JSON.stringify({ id: 'victim', password: 'a-long-secret' }),
  );
  assert.equal(r.status, 204, r.body);

  // What a page on evil.example makes the browser send: a form, the cached basic auth, the page's Origin.
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...FORM, origin: 'http://evil.example' },
    'id=evil1&password=a-long-secret',
  );
  assert.equal(r.status, 403, r.body);
  assert.match(
    title(r.body),
    /POST refused: its Origin "http:\/\/evil\.example" is not this API's own \("127\.0\.0\.1:\d+"\)/,
  );
  // JSON from another site's page, and other state-changing routes: refused the same way.
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...JSON_BODY, origin: 'http://evil.example' },
    JSON.stringify({ id: 'evil2', password: 'a-long-secret' }),
  );
  assert.equal(r.status, 403, r.body);
  // A browser that strips Origin still sends the Referer of the page; the same port on another host is another site.
  r = await rawRequest(port, 'DELETE', '/api/v1/clients-auth/victim', {
    ...basic,
    referer: 'http://evil.example/page',
  });
  assert.equal(r.status, 403, r.body);
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...FORM, origin: `http://127.0.0.2:${port}` },
    'id=evil3&password=a-long-secret',
  );
  assert.equal(r.status, 403, r.body);
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...FORM, origin: 'null' },
    'id=evil4&password=a-long-secret',
  );
  assert.equal(r.status, 403, r.body);

  // Without any Origin (a page that hides it) the form body itself is refused: state-changing routes take JSON only.
  r = await rawRequest(port, 'POST', '/api/v1/clients-auth', { ...basic, ...FORM }, 'id=evil5&password=a-long-secret');
  assert.equal(r.status, 415, r.body);
  assert.match(
    title(r.body),
    /application\/x-www-form-urlencoded.*send JSON \(content-type: application\/json\); only POST \/api\/v1\/login takes a form/,
  );
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, 'content-type': 'text/plain' },
    JSON.stringify({ id: 'evil6', password: 'a-long-secret' }),
  );
  assert.equal(r.status, 415, r.body);
  for (const id of ['evil1', 'evil2', 'evil3', 'evil4', 'evil5', 'evil6'])
    assert.equal(await credential(id), 404, `credential ${id} was created`);
  assert.equal(await credential('victim'), 200, 'the credential victim was deleted');

  // The API's own pages (Origin of the same host and port) and programs without Origin keep working; GETs are not checked.
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...JSON_BODY, origin: own },
    JSON.stringify({ id: 'good1', password: 'a-long-secret' }),
  );
  assert.equal(r.status, 204, r.body);
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/clients-auth',
    { ...basic, ...JSON_BODY, origin: `https://127.0.0.1:${port}`, referer: `${own}/` },
    JSON.stringify({ id: 'good2', password: 'a-long-secret' }),
  );
  assert.equal(r.status, 204, r.body);
  assert.equal(
    (await rawRequest(port, 'GET', '/api/v1/status', { ...basic, origin: 'http://evil.example' })).status,
    200,
  );
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/login',
    { ...FORM, origin: own },
    `username=${USER}&password=${PASSWORD}`,
  );
  assert.equal(r.status, 200, r.body);
  // A login from another site's page is refused before the password is looked at: it cannot count as a failure.
  r = await rawRequest(
    port,
    'POST',
    '/api/v1/login',
    { ...FORM, origin: 'http://evil.example' },
    `username=${USER}&password=wrong`,
  );
  assert.equal(r.status, 403, r.body);
  assert.ok(!server.proc.lines.some((l) => /failed API login/.test(l)), server.proc.output);
});

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const loginAt = (port: number, query: string) =>
  rawRequest(port, 'POST', `/api/v1/login${query}`, JSON_BODY, JSON.stringify({ username: USER, password: PASSWORD }));
const tokenOf = (body: string) => (JSON.parse(body) as { data: { token: string; expires_at: string } }).data;

test('issue 21 finding 10: a token cannot mint one that outlives it, and logout revokes what it minted', async (t) => {
  const server = await startServerInProcess(t);
  const port = server.apiPort;
  let r = await loginAt(port, '?token-lifetime=60');
  assert.equal(r.status, 200, r.body);
  const first = tokenOf(r.body);
  // The attack: the 60-second token asks for a 90-day one (RPort's bound).
  r = await rawRequest(port, 'GET', '/api/v1/login?token-lifetime=7776000', bearer(first.token));
  assert.equal(r.status, 200, r.body);
  const second = tokenOf(r.body);
  assert.ok(
    Date.parse(second.expires_at) <= Date.parse(first.expires_at),
    `minted ${second.expires_at}, its maker expires ${first.expires_at}`,
  );
  r = await rawRequest(port, 'GET', '/api/v1/login', bearer(second.token));
  const third = tokenOf(r.body);
  assert.ok(
    Date.parse(third.expires_at) <= Date.parse(first.expires_at),
    `minted ${third.expires_at}, its maker's maker expires ${first.expires_at}`,
  );
  assert.equal((await rawRequest(port, 'GET', '/api/v1/clients', bearer(third.token))).status, 200);

  // Logging out the first token ends every token minted from it, down the chain.
  assert.equal((await rawRequest(port, 'DELETE', '/api/v1/logout', bearer(first.token))).status, 204);
  for (const token of [first, second, third])
    assert.equal((await rawRequest(port, 'GET', '/api/v1/clients', bearer(token.token))).status, 401);
});

test("[api] max_token_lifetime (RPort's key, hours) caps every token: asked-for lifetimes, the 24 h default, basic-auth logins", async (t) => {
  const server = await startServerInProcess(t, ['--max-token-lifetime', '1']);
  const port = server.apiPort;
  const first = tokenOf((await loginAt(port, '?token-lifetime=60')).body);
  let r = await rawRequest(port, 'GET', '/api/v1/login?token-lifetime=7776000', bearer(first.token));
  assert.equal(r.status, 400, r.body);
  assert.match(
    title(r.body),
    /"token-lifetime" = 7776000 must be 1 to 3600 seconds \(1h0m0s, \[api\] max_token_lifetime\)/,
  );
  assert.equal((await loginAt(port, '?token-lifetime=3601')).status, 400);
  const left = (body: string) => Date.parse(tokenOf(body).expires_at) - Date.now();
  r = await loginAt(port, '');
  assert.ok(left(r.body) <= 3600_000 && left(r.body) > 3000_000, r.body);
  r = await rawRequest(port, 'GET', '/api/v1/login', basic);
  assert.ok(left(r.body) <= 3600_000 && left(r.body) > 3000_000, r.body);
});

test('tokens minted from tokens: the maker is not evicted to make room for its own child, and chains are bounded', () => {
  const tokens = new Tokens();
  const root = tokens.issue('admin').token;
  // The user's cap is full and the root is the oldest: minting from it evicts another, not the root (and with it the new token).
  const others = Array.from({ length: MAX_TOKENS_PER_USER - 1 }, () => tokens.issue('admin').token);
  const child = tokens.issue('admin', undefined, root).token;
  assert.ok(tokens.valid(root) && tokens.valid(child), 'the maker was evicted, and its new token with it');
  assert.ok(!tokens.valid(others[0]!), 'the oldest other token made room');
  let last = child;
  for (let i = 2; i < MAX_TOKENS_PER_USER; i++) last = tokens.issue('admin', undefined, last).token;
  assert.throws(
    () => tokens.issue('admin', undefined, last),
    (e: Error) => e instanceof ApiError && /ends a chain of 20 tokens, each minted from the one before/.test(e.message),
  );
  tokens.revoke(root);
  assert.ok(!tokens.valid(last), 'the end of the chain goes with its root');
});

test('issue 21 finding 11: filter patterns that would hold the event loop for seconds get 400 at the step budget, and other requests are answered meanwhile', async (t) => {
  // rportd in its own process: the test's requests must not share its event loop.
  const server = await startServer(t);
  const tags = Array.from({ length: 100 }, (_, i) => `${'a'.repeat(250)}${i}`);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'long-tags', '--tags', tags.join(',')]);
  await client.waitFor(/ping to 127\.0\.0\.1:\d+ succeeded/);
  // 100 patterns "*aaa...ab": each takes about pattern x text steps on every tag (some 10^9 in all).
  const patterns = Array.from({ length: 100 }, () => `*${'a'.repeat(110)}b`).join(',');
  const hostile = rawRequest(server.apiPort, 'GET', `/api/v1/clients?filter[tags]=${patterns}`, basic);
  const status = rawRequest(server.apiPort, 'GET', '/api/v1/status', basic);
  const r = await hostile;
  assert.equal(r.status, 400, r.body.slice(0, 300));
  assert.match(title(r.body), /take more than 20,000,000 matching steps .*use fewer or shorter patterns/);
  assert.equal((await status).status, 200);
  // Ordinary filters over the same tags still match.
  const ok = await rawRequest(server.apiPort, 'GET', `/api/v1/clients?filter[tags]=*a99,b*`, basic);
  assert.deepEqual(
    JSON.parse(ok.body).data.map((c: { id: string }) => c.id),
    ['long-tags'],
  );
});
