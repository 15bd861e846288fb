import assert from 'node:assert/strict';
import { eventually, API_AUTH, type ServerHandle } from './procs.js';

/** The API with a JSON body, as the [api] auth user. */
export async function apiCall(server: ServerHandle, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://127.0.0.1:${server.apiPort}${path}`, {
    method,
    headers: { authorization: `Basic ${Buffer.from(API_AUTH).toString('base64')}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** Runs a command on one client through the API and waits until the job is no longer running. */
export async function runJob(server: ServerHandle, client: string, body: Record<string, unknown>, kind = 'commands'): Promise<any> {
  const r = await apiCall(server, 'POST', `/api/v1/clients/${client}/${kind}`, body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const jid = r.body.data.jid as string;
  return eventually(async () => {
    const j = (await apiCall(server, 'GET', `/api/v1/clients/${client}/commands/${jid}`)).body.data;
    return j.status === 'running' ? undefined : j;
  }, 30_000, `job ${jid} to end`);
}
