import type { FastifyRequest } from 'fastify';

/** Methods that change something: a page on another site must not make a browser send them here. */
const STATE_CHANGING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

const DEFAULT_PORT: Record<string, string> = { 'http:': '80', 'https:': '443' };

/** host:port of an http(s) URL, the default port filled in; undefined for anything else (`null`, other schemes). */
function hostPortOf(url: string, scheme?: string): string | undefined {
  try {
    const u = new URL(scheme ? `${scheme}//${url}` : url);
    const port = DEFAULT_PORT[u.protocol];
    return port === undefined || u.username || u.password ? undefined : `${u.hostname}:${u.port || port}`;
  } catch {
    return undefined;
  }
}

/**
 * Why a state-changing request comes from another site's page (a browser sends its cached basic auth along,
 * so a form there could act here): its Origin or Referer names another host than the one it was sent to.
 * Undefined when it is fine; a request with neither header (curl, scripts, other nodes) is fine. The host is
 * compared, not the scheme: behind a TLS proxy the page is https and the request arrives as http.
 */
export function foreignOrigin(req: FastifyRequest): string | undefined {
  if (!STATE_CHANGING.has(req.method)) return undefined;
  for (const name of ['origin', 'referer'] as const) {
    const value = req.headers[name];
    if (value === undefined) continue;
    const from = hostPortOf(value);
    const scheme = from ? new URL(value).protocol : 'http:';
    const host = req.headers.host === undefined ? undefined : hostPortOf(req.headers.host, scheme);
    if (from === undefined || from !== host) {
      const shown = JSON.stringify(value.length > 100 ? `${value.slice(0, 100)}...` : value);
      return `${req.method} refused: its ${name === 'origin' ? 'Origin' : 'Referer'} ${shown} is not this API's own (${JSON.stringify(req.headers.host ?? '')}), so a page on another site sent it; call the API from its own dashboard or from a program that sends no Origin`;
    }
  }
  return undefined;
}
