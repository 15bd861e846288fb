import assert from 'node:assert/strict';
import { apiRequest, eventually, type ServerHandle } from '../../harness/procs.js';

/** The API with a JSON body, as the [api] auth user. */
export function apiCall(
  server: ServerHandle,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: any }> {
  return apiRequest(server.apiPort, method, path, { body });
}

/** Runs a command on one client through the API and waits until the job is no longer running. */
export async function runJob(
  server: ServerHandle,
  client: string,
  body: Record<string, unknown>,
  kind = 'commands',
): Promise<any> {
  const r = await apiCall(server, 'POST', `/api/v1/clients/${client}/${kind}`, body);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const jid = r.body.data.jid as string;
  return eventually(
    async () => {
      const j = (await apiCall(server, 'GET', `/api/v1/clients/${client}/commands/${jid}`)).body.data;
      return j.status === 'running' ? undefined : j;
    },
    30_000,
    `job ${jid} to end`,
  );
}
