import assert from 'node:assert/strict';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { CLIENT_FIELDS } from '../src/api/client-view.js';
import {
  cleanup,
  eventually,
  freePort,
  startClient,
  startServer,
  API_AUTH,
  type ServerHandle,
} from '../harness/procs.js';

// Requests as RPort's OpenAPI files document them (api-doc/openapi in the openrport repository), and the
// shapes of its answers: ErrorPayload, Client, Tunnel, ClientAuth, LoginResponse, the list's meta.count.

const connected = /INFO {2}client: connected to (\S+) within/;
const basic = (auth: string) => `Basic ${Buffer.from(auth).toString('base64')}`;

interface Answer {
  status: number;
  body: any;
  text: string;
}

async function call(
  server: ServerHandle,
  method: string,
  path: string,
  o: { json?: unknown; form?: string; headers?: Record<string, string> } = {},
): Promise<Answer> {
  const headers: Record<string, string> = { authorization: basic(API_AUTH), ...o.headers };
  if (o.json !== undefined) headers['content-type'] = 'application/json';
  if (o.form !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
  const res = await fetch(`http://127.0.0.1:${server.apiPort}/api/v1${path}`, {
    method,
    headers,
    body: o.json !== undefined ? JSON.stringify(o.json) : o.form,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null, text };
}

/** RPort's ErrorPayload: {"errors": [{"code", "title", "detail"}]}, strings all, nothing else. */
function assertError(r: Answer, status: number, code: string, title?: RegExp): void {
  assert.equal(r.status, status, r.text);
  assert.deepEqual(Object.keys(r.body), ['errors'], r.text);
  assert.equal(r.body.errors.length, 1);
  const e = r.body.errors[0];
  assert.deepEqual(Object.keys(e).sort(), ['code', 'detail', 'title']);
  for (const k of ['code', 'title', 'detail']) assert.equal(typeof e[k], 'string', `${k} in ${r.text}`);
  assert.equal(e.code, code, r.text);
  if (title) assert.match(e.title, title);
}

function types(obj: Record<string, unknown>, spec: Record<string, string>): void {
  for (const [k, type] of Object.entries(spec)) {
    const v = obj[k];
    const actual = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
    assert.ok(type.split('|').includes(actual), `${k}: ${actual} (${JSON.stringify(v)}), want ${type}`);
  }
}

async function echoServer(t: TestContext): Promise<number> {
  // A tunnel deleted with its connections open resets them: the target's side sees ECONNRESET.
  const srv = createServer((s) => s.on('error', () => s.destroy()).pipe(s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  cleanup(t, () => new Promise((r) => srv.close(r)));
  return (srv.address() as AddressInfo).port;
}

/** An open connection through a tunnel, once its first echo came back. */
function openThrough(t: TestContext, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write('ping'));
    cleanup(t, () => s.destroy());
    s.once('data', () => resolve(s));
    s.on('error', reject);
  });
}

test('RPort error envelope on every kind of refusal: 400, 401, 404, 405, 409, 413', async (t) => {
  const server = await startServer(t);
  assertError(await call(server, 'GET', '/clients', { headers: { authorization: '' } }), 401, 'unauthorized', /log in/);
  assertError(
    await call(server, 'GET', '/clients', { headers: { authorization: basic('admin:wrong') } }),
    401,
    'unauthorized',
  );
  assertError(await call(server, 'GET', '/clients/nobody'), 404, 'not_found', /no client with id "nobody"/);
  assertError(await call(server, 'GET', '/nothing'), 404, 'not_found', /no such route/);
  assertError(
    await call(server, 'GET', '/clients?page[limit]=501'),
    400,
    'bad_request',
    /page\[limit\] = "501" must be a whole number from 1 to 500/,
  );
  assertError(
    await call(server, 'POST', '/clients-auth', { json: { id: 'client1', password: 'long-enough' } }),
    409,
    'ERR_CODE_ALREADY_EXIST',
  );
  assertError(
    await call(server, 'DELETE', '/clients-auth/client1'),
    405,
    'ERR_CODE_CLIENT_AUTH_RO',
    /\[server\] auth or auth_file/,
  );
  assertError(
    await call(server, 'POST', '/clients-auth', { json: { id: 'x', password: 'y'.repeat(20_000) } }),
    413,
    'bad_request',
    /over the limit/,
  );
  // Unknown fields are named, not dropped (fastify's default would strip them silently).
  assertError(
    await call(server, 'POST', '/clients-auth', { json: { id: 'new-one', password: 'long-enough', groups: ['x'] } }),
    400,
    'bad_request',
    /body field "groups" is not known here/,
  );
  assert.equal((await call(server, 'GET', '/clients-auth/new-one')).status, 404);
  // Not one answer in the old envelope.
  assert.equal((await call(server, 'GET', '/clients/nobody')).body.error, undefined);
});

test('GET /clients: page[limit], page[offset], sort, filter[...] with wildcards, or() and and(), fields[clients], meta.count', async (t) => {
  const server = await startServer(t);
  const a = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    'alpha',
    '--name',
    'Edge Berlin',
    '--tags',
    'linux,datacenter 4',
  ]);
  const b = startClient(t, `127.0.0.1:${server.port}`, [
    '--id',
    'beta',
    '--name',
    'Office Paris',
    '--tags',
    `linux,${'a'.repeat(60)}`,
  ]);
  const c = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'gamma', '--name', 'edge Rome', '--tags', 'windows']);
  await Promise.all([a, b, c].map((p) => p.waitFor(connected)));
  await c.stop();
  await eventually(async () =>
    (await call(server, 'GET', '/clients/gamma')).body.data.connection_state === 'disconnected' ? true : undefined,
  );

  const ids = (r: Answer) => r.body.data.map((x: { id: string }) => x.id);
  let r = await call(server, 'GET', '/clients');
  assert.deepEqual(Object.keys(r.body).sort(), ['data', 'meta']);
  assert.deepEqual(r.body.meta, { count: 3 });
  assert.deepEqual(ids(r), ['alpha', 'beta', 'gamma'], 'sorted by id when no sort is asked');
  const one = r.body.data[0];
  types(one, {
    id: 'string',
    name: 'string',
    os: 'string',
    os_arch: 'string',
    hostname: 'string',
    tags: 'array',
    version: 'string',
    address: 'string',
    tunnels: 'array',
    connection_state: 'string',
    disconnected_at: 'null|string',
    last_heartbeat_at: 'string',
    client_auth_id: 'string',
  });
  assert.equal(one.client_auth_id, 'client1');
  // fields[clients] may name every field a client has, and nothing else.
  assert.deepEqual(Object.keys(one).sort(), [...CLIENT_FIELDS].sort());

  r = await call(server, 'GET', '/clients?sort=-name&page[limit]=2&page[offset]=1');
  assert.deepEqual(
    [ids(r), r.body.meta.count],
    [['gamma', 'alpha'], 3],
    'Office Paris, edge Rome, Edge Berlin: the second and third',
  );
  r = await call(server, 'GET', '/clients?filter[name]=edge*');
  assert.deepEqual([ids(r), r.body.meta.count], [['alpha', 'gamma'], 2], 'case-insensitive wildcard');
  r = await call(server, 'GET', '/clients?filter[name]=Office Paris,edge rome');
  assert.deepEqual(ids(r), ['beta', 'gamma'], 'a comma list is OR');
  r = await call(server, 'GET', `/clients?filter[tags]=${encodeURIComponent('and(linux,datacenter 4)')}`);
  assert.deepEqual(ids(r), ['alpha']);
  r = await call(server, 'GET', '/clients?filter[tags]=or(windows,datacenter*)');
  assert.deepEqual(ids(r), ['alpha', 'gamma']);
  r = await call(server, 'GET', `/clients?filter[${encodeURIComponent('id|name')}]=*par*`);
  assert.deepEqual(ids(r), ['beta']);
  r = await call(server, 'GET', '/clients?filter[*]=*rome*');
  assert.deepEqual(ids(r), ['gamma']);
  r = await call(server, 'GET', '/clients?filter[connection_state]=connected&filter[tags]=linux');
  assert.deepEqual(ids(r), ['alpha', 'beta'], 'filters combine');
  r = await call(server, 'GET', '/clients?fields[clients]=id,connection_state&sort=id');
  assert.deepEqual(r.body.data, [
    { id: 'alpha', connection_state: 'connected' },
    { id: 'beta', connection_state: 'connected' },
    { id: 'gamma', connection_state: 'disconnected' },
  ]);
  r = await call(server, 'GET', '/clients/beta?fields[clients]=id,name');
  assert.deepEqual(r.body, { data: { id: 'beta', name: 'Office Paris' } });
  // A pattern that would make a backtracking matcher run for ages on beta's long tag is answered like any other.
  const hostile = await fetch(`http://127.0.0.1:${server.apiPort}/api/v1/clients?filter[*]=${'*a'.repeat(12)}*b`, {
    headers: { authorization: basic(API_AUTH) },
    signal: AbortSignal.timeout(10_000),
  });
  assert.deepEqual([hostile.status, (await hostile.json()).meta.count], [200, 0]);
  // rport's own filters still work beside RPort's.
  assert.deepEqual(ids(await call(server, 'GET', '/clients?connected=false')), ['gamma']);

  assertError(
    await call(server, 'GET', '/clients?filter[cpu_model]=x'),
    400,
    'not_implemented',
    /filter\[cpu_model\] on "cpu_model" is not implemented by rport: the rport client does not report it/,
  );
  assertError(
    await call(server, 'GET', '/clients?fields[clients]=id,groups'),
    400,
    'not_implemented',
    /"groups".*no client groups/,
  );
  assertError(await call(server, 'GET', '/clients?filter[colour]=red'), 400, 'bad_request', /unknown field "colour"/);
  assertError(
    await call(server, 'GET', '/clients?sort=address'),
    400,
    'bad_request',
    /sort names unknown field "address": use one of id, name, os, hostname, version/,
  );
  assertError(await call(server, 'GET', '/clients?fields[jobs]=id'), 400, 'bad_request', /fields\[clients\] only/);
  assertError(await call(server, 'GET', '/clients?page[offset]=-1'), 400, 'bad_request');
  assertError(await call(server, 'GET', '/clients?pages=2'), 400, 'bad_request', /"pages" is not known/);
  assertError(await call(server, 'GET', '/clients?filter[id]=a&filter[id]=b'), 400, 'bad_request', /given 2 times/);
});

test("PUT /clients/{id}/tunnels in RPort's form: bare-port remote, scheme, acl, idle-timeout-minutes, check_port, auto-close; the rest refused by name", async (t) => {
  const echo = await echoServer(t);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'tun']);
  await client.waitFor(connected);

  let r = await call(
    server,
    'PUT',
    `/clients/tun/tunnels?remote=${echo}&scheme=SSH&acl=127.0.0.1&idle-timeout-minutes=5&check_port=1`,
  );
  assert.equal(r.status, 200, r.text);
  const tun = r.body.data;
  types(tun, {
    id: 'string',
    client_id: 'string',
    lhost: 'string',
    lport: 'string',
    rhost: 'string',
    rport: 'string',
    lport_random: 'boolean',
    scheme: 'string',
    protocol: 'string',
    acl: 'string',
    http_proxy: 'boolean',
  });
  assert.deepEqual(
    [
      tun.client_id,
      tun.rhost,
      tun.rport,
      tun.lport_random,
      tun.scheme,
      tun.protocol,
      tun.acl,
      tun.http_proxy,
      tun.idle_timeout_sec,
    ],
    ['tun', '127.0.0.1', String(echo), true, 'ssh', 'tcp', '127.0.0.1', false, 300],
  );
  const sock = await openThrough(t, Number(tun.lport));
  // RPort's force: false keeps a tunnel with open connections (409), true ends them.
  assertError(
    await call(server, 'DELETE', `/clients/tun/tunnels/${tun.id}?force=false`),
    409,
    'conflict',
    /1 open connection/,
  );
  assert.equal((await call(server, 'DELETE', `/clients/tun/tunnels/${tun.id}?force=true`)).status, 204);
  await new Promise((resolve) => (sock.destroyed ? resolve(undefined) : sock.once('close', resolve)));

  // check_port: the client tries the target first; a closed port leaves no tunnel behind.
  const closed = await freePort();
  r = await call(server, 'PUT', `/clients/tun/tunnels?remote=127.0.0.1:${closed}&check_port=1`);
  assertError(
    r,
    400,
    'ERR_CODE_REMOTE_PORT_NOT_OPEN',
    new RegExp(`could not connect to 127\\.0\\.0\\.1:${closed}.*check_port=0`),
  );
  assert.deepEqual((await call(server, 'GET', '/clients/tun/tunnels')).body.data, []);
  r = await call(server, 'PUT', `/clients/tun/tunnels?remote=127.0.0.1:${closed}&check_port=0`);
  assert.equal(r.status, 200, 'check_port=0: no check');
  assert.equal((await call(server, 'DELETE', `/clients/tun/tunnels/${r.body.data.id}`)).status, 204);

  // Parameters RPort has and rport does not: a 400 that names them, never a tunnel without them.
  for (const [query, what] of [
    ['protocol=udp', /protocol=udp is not implemented by rport: tunnels carry TCP only/],
    ['protocol=tcp%2Budp', /protocol=tcp\+udp is not implemented/],
    ['http_proxy=true&scheme=https', /http_proxy=true is not implemented by rport: rportd runs no reverse proxy/],
    ['host_header=example.com', /host_header is not implemented/],
    ['auth_user=u&auth_password=hunter2-secret', /auth_(user|password) is not implemented/],
  ] as const) {
    r = await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&${query}`);
    assertError(r, 400, 'not_implemented', what);
    assert.doesNotMatch(r.text, /hunter2/);
  }
  assertError(
    await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&bogus=1`),
    400,
    'bad_request',
    /querystring field "bogus" is not known/,
  );
  assertError(
    await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&idle-timeout-minutes=10081`),
    400,
    'ERR_CODE_INVALID_IDLE_TIMEOUT',
  );
  assertError(
    await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&idle-timeout-minutes=5&skip-idle-timeout=1`),
    400,
    'bad_request',
    /give one of them/,
  );
  assertError(
    await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&auto-close=soon`),
    400,
    'bad_request',
    /"auto-close" = "soon" is not a duration/,
  );
  assertError(
    await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&acl=,`),
    400,
    'bad_request',
    /"acl" .*no address/,
  );
  assert.deepEqual((await call(server, 'GET', '/tunnels')).body.data, [], 'no refused request left a tunnel');

  // skip-idle-timeout: no idle timeout; protocol=tcp and http_proxy=false are what rport does.
  r = await call(
    server,
    'PUT',
    `/clients/tun/tunnels?remote=${echo}&skip-idle-timeout=1&protocol=tcp&http_proxy=false&local=0`,
  );
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.data.idle_timeout_sec, 0);
  assert.equal((await call(server, 'DELETE', `/clients/tun/tunnels/${r.body.data.id}`)).status, 204);

  // auto-close: the deadline is in the store, so a restart does not let the tunnel outlive it.
  r = await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&auto-close=3s`);
  assert.equal(r.status, 200, r.text);
  const closing = r.body.data;
  assert.ok(Date.parse(closing.auto_close_at) > Date.now(), closing.auto_close_at);
  const listed = (await call(server, 'GET', '/tunnels')).body.data;
  assert.deepEqual(
    listed.map((x: { id: string }) => x.id),
    [closing.id],
  );
  await server.proc.stop();
  const again = await startServer(t, [], { port: server.port, apiPort: server.apiPort, dataDir: server.dataDir });
  await again.proc.waitFor(
    new RegExp(`tunnel ${closing.id} of client tun reached its auto-close time: deleting it`),
    10_000,
  );
  assert.deepEqual((await call(again, 'GET', '/clients/tun/tunnels')).body.data, []);
});

test('auto-close without the API: a tunnel restored by an rportd with no [api] address still closes on time', async (t) => {
  const echo = await echoServer(t);
  const server = await startServer(t);
  const client = startClient(t, `127.0.0.1:${server.port}`, ['--id', 'tun']);
  await client.waitFor(connected);
  const r = await call(server, 'PUT', `/clients/tun/tunnels?remote=${echo}&local=127.0.0.1:0&auto-close=8s`);
  assert.equal(r.status, 200, r.text);
  const { id, lport } = r.body.data;
  await server.proc.stop();
  const mark = client.mark();
  // The same data folder and client port, the API turned off (the last --api-address wins).
  const again = await startServer(t, ['--api-address', ''], {
    port: server.port,
    apiPort: server.apiPort,
    dataDir: server.dataDir,
  });
  await client.waitFor(connected, 10_000, mark);
  await again.proc.waitFor(new RegExp(`tunnel ${id} of client tun reached its auto-close time: deleting it`), 20_000);
  await again.proc.waitFor(new RegExp(`tunnel ${id} of client tun deleted`));
  // What a user of the tunnel sees: its port no longer answers.
  const refused = await new Promise<boolean>((resolve) => {
    const s = connect(Number(lport), '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(false);
    });
    s.once('error', () => resolve(true));
  });
  assert.ok(refused, `port ${lport} still listens after the auto-close time`);
});

test('/clients-auth: POST 204, GET with filter[id] and pages, GET one, DELETE refused while clients use it unless force; /credentials stays', async (t) => {
  const server = await startServer(t);
  assert.equal(
    (await call(server, 'POST', '/clients-auth', { json: { id: 'auth-a', password: 'a-long-secret' } })).status,
    204,
  );
  // A form is taken on POST /login only (test/api-attack.test.ts): a page on another site can post one.
  assertError(
    await call(server, 'POST', '/clients-auth', { form: 'id=auth-b&password=b-long-secret' }),
    415,
    'bad_request',
    /send JSON/,
  );
  assert.equal(
    (await call(server, 'POST', '/clients-auth', { json: { id: 'auth-b', password: 'b-long-secret' } })).status,
    204,
  );
  assert.equal(
    (await call(server, 'POST', '/credentials', { json: { id: 'other', password: 'c-long-secret' } })).status,
    201,
  );
  let r = await call(server, 'GET', '/clients-auth?filter[id]=AUTH*&page[limit]=1&page[offset]=1');
  assert.deepEqual([r.body.data.map((x: { id: string }) => x.id), r.body.meta], [['auth-b'], { count: 2 }]);
  assert.doesNotMatch(r.text, /secret|\$2[aby]\$/, 'no password, no hash');
  r = await call(server, 'GET', '/clients-auth/auth-a');
  assert.equal(r.body.data.id, 'auth-a');
  assertError(await call(server, 'GET', '/clients-auth/nobody'), 404, 'not_found');
  assertError(
    await call(server, 'GET', '/clients-auth?filter[password]=x'),
    400,
    'bad_request',
    /unknown field "password"/,
  );

  const client = startClient(t, `127.0.0.1:${server.port}`, ['--auth', 'auth-a:a-long-secret', '--id', 'uses-a']);
  await client.waitFor(connected);
  assertError(
    await call(server, 'DELETE', '/clients-auth/auth-a'),
    409,
    'ERR_CODE_CLIENT_AUTH_HAS_CLIENT',
    /used by 1 client\(s\) \(uses-a\): delete it with force=true/,
  );
  assert.equal((await call(server, 'DELETE', '/clients-auth/auth-a?force=true')).status, 204);
  assert.equal((await call(server, 'DELETE', '/clients-auth/auth-b')).status, 204, 'no client uses it');
  assert.deepEqual(
    (await call(server, 'GET', '/credentials')).body.data.map((x: { id: string }) => x.id),
    ['other'],
  );
});

test("login in RPort's forms: GET /login with basic auth, POST /login as a form with token-lifetime; DELETE /logout; /status", async (t) => {
  const server = await startServer(t);
  const [user, password] = API_AUTH.split(':');
  let r = await call(server, 'GET', '/login');
  assert.equal(r.status, 200, r.text);
  types(r.body.data, { token: 'string', two_fa: 'null' });
  const bearer = { authorization: `Bearer ${r.body.data.token}` };
  assert.equal((await call(server, 'GET', '/clients', { headers: bearer })).status, 200);
  assertError(await call(server, 'GET', '/login', { headers: { authorization: '' } }), 401, 'unauthorized');

  r = await call(server, 'POST', '/login?token-lifetime=60', {
    form: `username=${user}&password=${password}`,
    headers: { authorization: '' },
  });
  assert.equal(r.status, 200, r.text);
  const left = Date.parse(r.body.data.expires_at) - Date.now();
  assert.ok(left > 30_000 && left <= 60_000, `token-lifetime=60 gave ${left} ms`);
  assertError(
    await call(server, 'POST', '/login?token-lifetime=0', {
      json: { username: user, password },
      headers: { authorization: '' },
    }),
    400,
    'bad_request',
    /token-lifetime/,
  );
  assertError(
    await call(server, 'POST', '/login', {
      json: { username: user, password: 'wrong' },
      headers: { authorization: '' },
    }),
    401,
    'unauthorized',
    /wrong username or password/,
  );

  r = await call(server, 'GET', '/status');
  types(r.body.data, {
    version: 'string',
    fingerprint: 'string',
    clients_connected: 'number',
    clients_disconnected: 'number',
    two_fa_enabled: 'boolean',
  });
  assert.equal((await call(server, 'DELETE', '/logout', { headers: bearer })).status, 204);
  assertError(await call(server, 'GET', '/clients', { headers: bearer }), 401, 'unauthorized');
});
