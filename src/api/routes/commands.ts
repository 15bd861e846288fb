/* eslint-disable max-lines -- RPort's command and multi-client command routes, which share one request shape */
import type { FastifyInstance } from 'fastify';
import type { JobAsk, MultiJobSpec } from '../../server/jobs/job-service.js';
import type { JobRow } from '../../server/store/jobs.js';
import { MAX_LINE } from '../../transport/control-channel.js';
import { MAX_JOB_TIMEOUT_SEC } from '../../transport/protocol.js';
import type { ApiOptions } from '../context.js';
import { ApiError, notImplemented } from '../errors.js';
import { applyListQuery, parseListQuery, type ListForm, type RawQuery } from '../list-query.js';
import { forwardToHolder } from '../peers.js';
import { idParams } from './schemas.js';

/** RPort's run_remote_cmd_timeout_sec default. */
const DEFAULT_TIMEOUT_SEC = 60;
const MAX_COMMAND = 8192;
/** A script travels in one control message (at most 256 KiB): its text stays well below. */
const MAX_SCRIPT_BYTES = 128 << 10;
const SCRIPT_BODY_LIMIT = 256 << 10;
const MULTI_BODY_LIMIT = 1 << 20;
/** Jobs of one client that its list looks at (newest first). */
const CLIENT_JOBS_SCANNED = 1000;

const iso = (t: number | null) => (t === null ? null : new Date(t).toISOString());

/** A job as RPort shows it, plus exit_code; a running job shows the output that arrived so far. */
export function jobView(j: JobRow, live?: { stdout: string; stderr: string }) {
  return {
    jid: j.jid,
    status: j.status,
    finished_at: iso(j.finished_at),
    client_id: j.client_id,
    client_name: j.client_name,
    command: j.command,
    cwd: j.cwd,
    interpreter: j.interpreter,
    pid: j.pid,
    started_at: iso(j.started_at),
    created_by: j.created_by,
    timeout_sec: j.timeout_sec,
    multi_job_id: j.multi_job_id,
    schedule_id: null,
    error: j.error,
    result: { stdout: live?.stdout ?? j.stdout, stderr: live?.stderr ?? j.stderr, summary: '' },
    is_sudo: false,
    is_script: j.is_script === 1,
    stream_result: false,
    exit_code: j.exit_code,
  };
}

/** Without the output: what lists show. */
function jobSummary(j: JobRow) {
  const { result: _result, ...rest } = jobView(j);
  return rest;
}

const JOB_FIELDS = [
  'jid',
  'status',
  'finished_at',
  'client_id',
  'client_name',
  'command',
  'cwd',
  'interpreter',
  'pid',
  'started_at',
  'created_by',
  'timeout_sec',
  'multi_job_id',
  'schedule_id',
  'error',
  'is_sudo',
  'is_script',
  'stream_result',
  'exit_code',
] as const;
const JOBS_FORM: ListForm = {
  resource: 'commands',
  filterable: ['jid', 'status', 'multi_job_id', 'created_by', 'is_script'],
  sortable: ['jid', 'started_at', 'finished_at', 'status', 'multi_job_id', 'created_by'],
  fieldNames: JOB_FIELDS,
  missing: { schedule_id: 'rport has no schedules' },
};
const MULTI_FORM: ListForm = {
  resource: 'commands',
  filterable: ['jid', 'created_by'],
  sortable: ['jid', 'started_at', 'created_by'],
  missing: { schedule_id: 'rport has no schedules' },
};

const common = {
  interpreter: { type: 'string', maxLength: 1024 },
  cwd: { type: 'string', maxLength: 4096 },
  timeout_sec: { type: 'integer', minimum: 1, maximum: MAX_JOB_TIMEOUT_SEC },
  is_sudo: { type: 'boolean' },
} as const;
const commandText = { type: 'string', minLength: 1, maxLength: MAX_COMMAND } as const;
const scriptText = { type: 'string', minLength: 1, maxLength: Math.ceil(MAX_SCRIPT_BYTES / 3) * 4 + 1024 } as const;
const multi = {
  client_ids: { type: 'array', maxItems: 10_000, items: { type: 'string', minLength: 1, maxLength: 200 } },
  group_ids: { type: 'array', items: { type: 'string', maxLength: 200 } },
  tags: {
    type: 'object',
    additionalProperties: false,
    required: ['tags'],
    properties: {
      tags: { type: 'array', minItems: 1, maxItems: 100, items: { type: 'string', maxLength: 256 } },
      operator: { type: 'string', enum: ['OR', 'AND', 'or', 'and'] },
    },
  },
  execute_concurrently: { type: 'boolean' },
  abort_on_error: { type: 'boolean' },
} as const;
const body = (text: 'command' | 'script', withMulti: boolean) => ({
  type: 'object',
  additionalProperties: false,
  required: [text],
  properties: { [text]: text === 'command' ? commandText : scriptText, ...common, ...(withMulti ? multi : {}) },
});
const jobParams = {
  type: 'object',
  properties: { id: idParams.properties.id, job_id: { type: 'string', minLength: 1, maxLength: 64 } },
  required: ['job_id'],
} as const;

interface Ask {
  command?: string;
  script?: string;
  interpreter?: string;
  cwd?: string;
  timeout_sec?: number;
  is_sudo?: boolean;
}
interface MultiAsk extends Ask {
  client_ids?: string[];
  group_ids?: string[];
  tags?: { tags: string[]; operator?: string };
  execute_concurrently?: boolean;
  abort_on_error?: boolean;
}

/** The script body: RPort's base64 of the script's text. */
function decodeScript(b64: string): string {
  const compact = b64.replace(/\s+/g, '');
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(compact) || compact.length % 4 === 1)
    throw new ApiError(
      400,
      'bad_request',
      'body field "script" is not base64 (RPort sends the script\'s text base64-encoded)',
    );
  const text = Buffer.from(compact, 'base64');
  if (!text.length) throw new ApiError(400, 'bad_request', 'body field "script" is empty');
  if (text.length > MAX_SCRIPT_BYTES)
    throw new ApiError(
      400,
      'bad_request',
      `body field "script" holds ${text.length} bytes: at most ${MAX_SCRIPT_BYTES} (128 KiB)`,
    );
  const script = text.toString('utf8');
  // It travels as JSON in one control message: control characters grow sixfold there, and the client ends a connection whose message is too long.
  if (JSON.stringify(script).length > MAX_LINE - 4096)
    throw new ApiError(
      400,
      'bad_request',
      `body field "script" is ${JSON.stringify(script).length} characters once JSON-encoded, over the control channel's ${(MAX_LINE - 4096) >> 10} KiB: send a smaller script, with fewer control characters`,
    );
  return script;
}

function askOf(b: Ask, isScript: boolean): JobAsk {
  if (b.is_sudo)
    throw notImplemented('is_sudo', "commands run as the client's user: give that user the rights the command needs");
  return {
    command: isScript ? decodeScript(b.script!) : b.command!,
    is_script: isScript,
    interpreter: b.interpreter ?? '',
    cwd: b.cwd ?? '',
    timeout_sec: b.timeout_sec ?? DEFAULT_TIMEOUT_SEC,
  };
}

/**
 * RPort's command and script routes: POST /clients/{id}/commands|scripts, GET /clients/{id}/commands[/{job_id}],
 * POST /commands|scripts (many clients), GET /commands[/{job_id}]. Answers are {data: ...}.
 */
export function commandRoutes(app: FastifyInstance, o: ApiOptions): void {
  // The API user: every job records who started it.
  const createdBy = o.user || 'api';

  for (const kind of ['commands', 'scripts'] as const) {
    const isScript = kind === 'scripts';
    app.post<{ Params: { id: string }; Body: Ask }>(
      `/api/v1/clients/:id/${kind}`,
      {
        config: { forwarded: true },
        bodyLimit: isScript ? SCRIPT_BODY_LIMIT : undefined,
        schema: { params: idParams, body: body(isScript ? 'script' : 'command', false) },
      },
      async (req, reply) => {
        const ask = askOf(req.body, isScript);
        const forwarded = await forwardToHolder(o, req, reply, req.params.id);
        if (forwarded) return forwarded;
        if (!o.registry.get(req.params.id))
          throw new ApiError(
            404,
            'not_found',
            `no connected client with id "${req.params.id}" (a job runs on a connected client only)`,
          );
        const job = await o.jobs.runOne(req.params.id, ask, createdBy);
        return { data: { jid: job.jid } };
      },
    );

    app.post<{ Body: MultiAsk }>(
      `/api/v1/${kind}`,
      {
        bodyLimit: isScript ? SCRIPT_BODY_LIMIT + MULTI_BODY_LIMIT : MULTI_BODY_LIMIT,
        schema: { body: body(isScript ? 'script' : 'command', true) },
      },
      async (req) => {
        const b = req.body;
        const ask = askOf(b, isScript);
        if (b.group_ids?.length)
          throw notImplemented('group_ids', 'rport has no client groups: select clients by tags instead');
        const ids = [...new Set(b.client_ids ?? [])];
        if (ids.length && b.tags)
          throw new ApiError(400, 'bad_request', 'give either client_ids or tags, not both (as RPort)');
        let targets: string[];
        const tags = b.tags
          ? { tags: b.tags.tags, operator: (b.tags.operator?.toUpperCase() ?? 'OR') as 'OR' | 'AND' }
          : null;
        if (tags) {
          const hit = (t: string[]) =>
            tags.operator === 'AND' ? tags.tags.every((x) => t.includes(x)) : tags.tags.some((x) => t.includes(x));
          targets = (await o.registry.clients())
            .filter((c) => hit(c.tags))
            .map((c) => c.id)
            .sort();
          if (!targets.length)
            throw new ApiError(
              400,
              'bad_request',
              `no client has ${tags.operator === 'AND' ? 'all' : 'any'} of the tags ${JSON.stringify(tags.tags)}`,
            );
        } else {
          if (!ids.length)
            throw new ApiError(
              400,
              'bad_request',
              'body field "client_ids" is missing or empty: name the clients, or select them by tags',
            );
          const names = await Promise.all(ids.map((id) => o.registry.knownName(id)));
          const unknown = ids.find((_id, i) => names[i] === undefined);
          if (unknown !== undefined) throw new ApiError(404, 'not_found', `no client with id "${unknown}"`);
          targets = ids;
        }
        const spec: MultiJobSpec = {
          ...ask,
          client_ids: targets,
          tags,
          concurrent: b.execute_concurrently ?? false,
          // As RPort: abort_on_error is true unless set, and means nothing for concurrent jobs.
          abort_on_err: (b.execute_concurrently ?? false) ? false : (b.abort_on_error ?? true),
        };
        const m = await o.jobs.runMulti(spec, createdBy);
        return { data: { jid: m.jid } };
      },
    );
  }

  app.get<{ Params: { id: string }; Querystring: RawQuery }>(
    '/api/v1/clients/:id/commands',
    { schema: { params: idParams } },
    async (req) => {
      const q = parseListQuery(req.query, JOBS_FORM);
      if (!q.sort.length) q.sort = [{ field: 'started_at', desc: true }];
      return applyListQuery((await o.jobs.store.jobsOfClient(req.params.id, CLIENT_JOBS_SCANNED)).map(jobSummary), q);
    },
  );

  app.get<{ Params: { id: string; job_id: string } }>(
    '/api/v1/clients/:id/commands/:job_id',
    { schema: { params: jobParams } },
    async (req) => {
      const j = await o.jobs.store.job(req.params.job_id);
      if (!j || j.client_id !== req.params.id)
        throw new ApiError(404, 'not_found', `client "${req.params.id}" has no job "${req.params.job_id}"`);
      return { data: jobView(j, j.status === 'running' ? o.jobs.liveOutput(j.jid) : undefined) };
    },
  );

  app.get<{ Querystring: RawQuery }>('/api/v1/commands', async (req) => {
    const q = parseListQuery(req.query, MULTI_FORM);
    if (!q.sort.length) q.sort = [{ field: 'started_at', desc: true }];
    const rows = await o.jobs.store.multiJobs(CLIENT_JOBS_SCANNED);
    return applyListQuery(
      rows.map((m) => ({ jid: m.jid, started_at: iso(m.started_at), created_by: m.created_by, schedule_id: null })),
      q,
    );
  });

  app.get<{ Params: { job_id: string } }>(
    '/api/v1/commands/:job_id',
    { schema: { params: jobParams } },
    async (req) => {
      const m = await o.jobs.store.multiJob(req.params.job_id);
      if (!m) throw new ApiError(404, 'not_found', `no multi-client job "${req.params.job_id}"`);
      const spec = JSON.parse(m.spec) as MultiJobSpec;
      const jobs = await o.jobs.store.jobsOfMultiJob(m.jid);
      return {
        data: {
          jid: m.jid,
          started_at: iso(m.started_at),
          created_by: m.created_by,
          schedule_id: null,
          client_ids: spec.client_ids,
          group_ids: [],
          tags: spec.tags,
          command: spec.command,
          cwd: spec.cwd,
          interpreter: spec.interpreter,
          timeout_sec: spec.timeout_sec,
          concurrent: spec.concurrent,
          abort_on_err: spec.abort_on_err,
          is_sudo: false,
          is_script: spec.is_script,
          jobs: jobs.map((j) => jobView(j, j.status === 'running' ? o.jobs.liveOutput(j.jid) : undefined)),
        },
      };
    },
  );
}
