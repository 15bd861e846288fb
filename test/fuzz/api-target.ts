// HTTP requests (method, path and query, headers, body) -> the API, built in-process by createApi and
// listening on 127.0.0.1: never a 5xx, never a stack frame in a body or the log, and a route that is not
// public answers 401 to a request without credentials.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { METHODS, validateHeaderName, validateHeaderValue } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import type { FastifyInstance } from 'fastify';
import { apiApp, rawRequest } from '../helpers/api-app.js';
import { STACK_FRAME, type Target } from './engine.js';

const USER = 'admin';
const PASSWORD = 'apipass';
const BASIC = `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`;
// Placeholders the input may carry, replaced by live credentials at run time.
const VALID_BASIC = '{{basic}}';
const VALID_TOKEN = '{{token}}';

interface Api {
  app: FastifyInstance;
  port: number;
  token: string;
  logFile: string;
  /** Whether the route that answered the last request is public (undefined: no route matched). */
  lastPublic: boolean | undefined;
}
let api: Promise<Api> | undefined;

async function start(): Promise<Api> {
  const dir = mkdtempSync(join(tmpdir(), 'rport-fuzz-api-'));
  const { app, logFile } = apiApp(dir, { logLevel: 'debug' });
  const out: Api = { app, port: 0, token: '', logFile, lastPublic: undefined };
  app.addHook('onClose', async () => rmSync(dir, { recursive: true, force: true }));
  app.addHook('onResponse', async (req) => {
    out.lastPublic = req.routeOptions.url === undefined ? undefined : req.routeOptions.config.public === true;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  out.port = (app.server.address() as { port: number }).port;
  const login = await send(
    out,
    'POST',
    '/api/v1/login',
    { 'content-type': 'application/json' },
    JSON.stringify({ username: USER, password: PASSWORD }),
  );
  out.token = (JSON.parse(login.body) as { data: { token: string } }).data.token;
  return out;
}

export async function stopApi(): Promise<void> {
  if (api) await (await api).app.close();
  api = undefined;
}

// An event stream opened with credentials never ends: its head is the answer.
const send = (a: Api, method: string, path: string, headers: Record<string, string>, body: string) =>
  rawRequest(a.port, method, path, headers, body, (res) =>
    String(res.headers['content-type']).startsWith('text/event-stream'),
  );

const PATHS = [
  '/',
  '/dashboard.css',
  '/dashboard.js',
  '/api/v1/login',
  '/api/v1/logout',
  '/api/v1/status',
  '/api/v1/clients',
  '/api/v1/clients/c1',
  '/api/v1/clients/c1/tunnels',
  '/api/v1/clients/c1/tunnels/t1',
  '/api/v1/credentials',
  '/api/v1/credentials/c1',
  '/api/v1/events',
  '/metrics',
  '/nothing',
];
const QUERY = ['connected', 'tag', 'q', 'local', 'remote', 'acl', 'idle_timeout', 'token'];

const generate = fc
  .record({
    method: fc.constantFrom('GET', 'GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH'),
    path: fc.oneof(fc.constantFrom(...PATHS), fc.webPath()),
    query: fc.array(
      fc.tuple(
        fc.constantFrom(...QUERY),
        fc.oneof(
          fc.string({ maxLength: 10 }),
          fc.constantFrom('true', '127.0.0.1:22', '2222', '10.0.0.0/8', '5m', VALID_TOKEN),
        ),
      ),
      { maxLength: 3 },
    ),
    auth: fc.constantFrom(
      '',
      VALID_BASIC,
      `Bearer ${VALID_TOKEN}`,
      'Basic Zm9vOmJhcg==',
      'Bearer x',
      'Basic',
      'Basic %%%',
    ),
    type: fc.constantFrom(
      '',
      'application/json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/json; charset=latin1',
    ),
    body: fc.oneof(
      fc.constant(''),
      fc.json({ maxDepth: 2 }),
      fc.constant('{"username":"admin","password":"x"}'),
      fc.constant('{"id":"c2","password":"longenough-pw"}'),
      fc.string({ maxLength: 40 }),
    ),
  })
  .map((r) => {
    const query = r.query.length
      ? '?' +
        r.query
          .map(
            ([k, v]) =>
              `${k}=${encodeURIComponent(v)
                .replace(/%7B%7B/g, '{{')
                .replace(/%7D%7D/g, '}}')}`,
          )
          .join('&')
      : '';
    const head = [
      `${r.method} ${r.path}${query}`,
      ...(r.auth ? [`authorization: ${r.auth}`] : []),
      ...(r.type ? [`content-type: ${r.type}`] : []),
    ];
    return Buffer.from(`${head.join('\n')}\n\n${r.body}`);
  });

/** "METHOD target", header lines, a blank line, the body: bytes that do not fit are made to fit, as an HTTP parser would refuse them anyway. */
function parse(text: string, a: Api): { method: string; path: string; headers: Record<string, string>; body: string } {
  const split = text.indexOf('\n\n');
  const [first = '', ...lines] = (split < 0 ? text : text.slice(0, split)).split('\n');
  const body = split < 0 ? '' : text.slice(split + 2);
  const sp = first.indexOf(' ');
  const method = sp > 0 && METHODS.includes(first.slice(0, sp)) ? first.slice(0, sp) : 'GET';
  let path = (sp > 0 ? first.slice(sp + 1) : first).replaceAll(VALID_TOKEN, a.token);
  path = path.replace(/[\x00-\x20\x7f-\uffff]/g, (c) => Buffer.from(c).toString('hex').replace(/../g, '%$&'));
  if (!path.startsWith('/')) path = '/' + path;
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const colon = l.indexOf(':');
    if (colon <= 0) continue;
    const name = l.slice(0, colon).trim().toLowerCase();
    const value = l
      .slice(colon + 1)
      .trim()
      .replace(VALID_BASIC, BASIC)
      .replace(VALID_TOKEN, a.token);
    try {
      validateHeaderName(name);
      validateHeaderValue(name, value);
    } catch {
      continue;
    }
    if (name === 'content-length' || name === 'transfer-encoding' || name === 'connection' || name === 'host') continue;
    headers[name] = value;
  }
  // Node's client sends the body of a GET, HEAD, DELETE or OPTIONS unframed unless told its length: the
  // server would read it as a second request.
  if (body && method !== 'HEAD') headers['content-length'] = String(Buffer.byteLength(body));
  return { method, path, headers, body: method === 'HEAD' ? '' : body };
}

function validPercentEncoding(path: string): boolean {
  try {
    decodeURIComponent(path);
    return true;
  } catch {
    return false;
  }
}

export const apiTarget: Target = {
  name: 'api',
  generate,
  dictionary: [
    ...PATHS,
    ...QUERY.map((q) => `&${q}=`),
    '?',
    '%',
    '%2e',
    '%2F',
    '..',
    '//',
    ';',
    '#',
    '\nauthorization: ',
    VALID_BASIC,
    `Bearer ${VALID_TOKEN}`,
    '\ncontent-type: application/json',
    '\n\n',
    '{',
    '}',
    '"',
    ':',
    '[',
    ']',
    'null',
    '"id"',
    '"password"',
    '"username"',
    '\\u0000',
  ],
  maxLen: 20 << 10,
  cover: /\/dist\/src\/api\/|\/find-my-way\/|\/fastify\/lib\//,
  async run(data) {
    const a = await (api ??= start());
    const r = parse(data.toString('utf8'), a);
    a.lastPublic = undefined;
    let res;
    try {
      res = await send(a, r.method, r.path, r.headers, r.body);
    } catch (err) {
      // A refusal answered before the body was read (as unauthenticated bodies are never read) may reach a
      // client that is still sending as a reset: TCP's race, not a crash.
      if (r.body && /socket hang up|ECONNRESET/.test(String(err))) return;
      throw err;
    }
    const what = `${r.method} ${r.path} -> ${res.status}`;
    if (res.status >= 500) throw new Error(`${what}: a server error: ${res.body.slice(0, 300)}`);
    if (STACK_FRAME.test(res.body)) throw new Error(`${what}: a stack frame in the body: ${res.body.slice(0, 300)}`);
    // Node's HTTP parser refuses a malformed request, and the router a path that is not valid percent-encoding,
    // before any route or hook, credentials or not: nothing about the routes leaks from either.
    if (
      res.status === 400 &&
      (res.body === '{"error":"Bad Request","message":"Client Error","statusCode":400}' ||
        !validPercentEncoding(r.path.split('?')[0]!))
    )
      return;
    const credentials = r.headers.authorization !== undefined || /[?&]token=/.test(r.path);
    if (!credentials && !a.lastPublic && res.status !== 401)
      throw new Error(`${what} without credentials on a route that is not public (not 401): ${res.body.slice(0, 200)}`);
  },
  async check() {
    const a = await (api ??= start());
    const log = readFileSync(a.logFile, 'utf8');
    if (STACK_FRAME.test(log)) throw new Error(`a stack frame in the API log: ${log.slice(-500)}`);
  },
};
