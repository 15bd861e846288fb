import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { describeSession, type ClientRegistry } from '../server/client-registry.js';
import { safeEqual } from '../server/credentials.js';
import { VERSION } from '../version.js';

export interface ApiOptions {
  user: string;
  password: string;
  registry: ClientRegistry;
  fingerprint: string;
  startedAt: number;
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function fail(res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string>): void {
  send(res, status, { error: { code, message } }, headers);
}

function authorized(req: IncomingMessage, o: ApiOptions): boolean {
  if (!o.user) return true;
  const m = /^Basic (.+)$/i.exec(req.headers.authorization ?? '');
  if (!m) return false;
  const text = Buffer.from(m[1]!, 'base64').toString('utf8');
  const i = text.indexOf(':');
  return i > 0 && safeEqual(text.slice(0, i), o.user) && safeEqual(text.slice(i + 1), o.password);
}

/** The REST API under /api/v1, protected by [api] auth (HTTP basic). */
export function createApiServer(o: ApiOptions): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://api');
    if (!url.pathname.startsWith('/api/v1/')) return fail(res, 404, 'not_found', `no such route: ${url.pathname} (the API is under /api/v1)`);
    if (!authorized(req, o)) return fail(res, 401, 'unauthorized', 'HTTP basic auth with the [api] auth credentials is required', { 'www-authenticate': 'Basic realm="rportd"' });
    if (req.method !== 'GET') return fail(res, 405, 'method_not_allowed', `${req.method} is not allowed on ${url.pathname}`);
    switch (url.pathname) {
      case '/api/v1/clients':
        return send(res, 200, { data: o.registry.list().map(describeSession) });
      case '/api/v1/status':
        return send(res, 200, {
          data: { version: VERSION, fingerprint: o.fingerprint, uptime_sec: Math.round((Date.now() - o.startedAt) / 1000), clients_connected: o.registry.size },
        });
      default:
        return fail(res, 404, 'not_found', `no such route: ${url.pathname}`);
    }
  });
}
