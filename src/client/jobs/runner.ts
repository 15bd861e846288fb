import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, isAbsolute, join } from 'node:path';
import { errorMessage } from '../../log.js';
import { deadline, type Deadline } from '../../timeout.js';

const WINDOWS = process.platform === 'win32';
/** After the process exits, how long its pipes may stay open (a child it left behind holds them) before they are cut. */
const PIPE_GRACE_MS = 1000;

export interface JobSpec {
  command: string;
  isScript: boolean;
  interpreter: string;
  cwd: string;
  timeoutMs: number;
  /** Bytes kept of stdout and of stderr, each. */
  sendBackLimit: number;
  aliases: Record<string, string>;
  /** A command through its interpreter (sh -c, cmd.exe /c) rather than split into a program and its arguments. */
  useShell: boolean;
}

export interface JobOutcome {
  status: 'successful' | 'failed';
  exitCode: number | null;
  error: string;
  startedAt: number;
  finishedAt: number;
  stdout: Buffer;
  stderr: Buffer;
}

export type OutputListener = (stream: 'stdout' | 'stderr', chunk: Buffer) => void;

/** Refused before anything runs: the server gets this message as the job's error. */
export class JobRefused extends Error {}

type Flavour = 'cmd' | 'powershell' | 'posix';

function flavourOf(path: string): Flavour {
  const name = basename(path.replace(/\\/g, '/'))
    .toLowerCase()
    .replace(/\.exe$/, '');
  return name === 'cmd' ? 'cmd' : name === 'powershell' || name === 'pwsh' ? 'powershell' : 'posix';
}

/** The program an interpreter name stands for: the built-in names, then [interpreter-aliases], then (scripts only) a full path. */
function interpreterPath(spec: JobSpec): string {
  const name = spec.interpreter;
  if (spec.aliases[name]) return spec.aliases[name]!;
  switch (name) {
    case '':
      return WINDOWS ? 'cmd.exe' : '/bin/sh';
    case 'sh':
      return '/bin/sh';
    case 'bash':
      return 'bash';
    case 'cmd':
      return 'cmd.exe';
    case 'powershell':
      return 'powershell.exe';
    default:
      if (spec.isScript && isAbsolute(name)) return name;
      throw new JobRefused(
        `unknown interpreter "${name}": use sh, bash, cmd, powershell or a name of [interpreter-aliases]${spec.isScript ? ', or a full path' : ''}`,
      );
  }
}

/**
 * A command run without a shell: words split at spaces and tabs, a '...' or "..." keeps its spaces, and
 * nothing else is special (no expansion, globbing or escapes), so the filter saw every program that runs.
 * The program is refused when it is quoted or has '.' or '..' segments: `/usr/bin/../../bin/touch` would
 * match an allow pattern for /usr/bin.
 */
export function programArgv(command: string): string[] {
  const argv: string[] = [];
  let word: string | undefined;
  let quote: string | undefined;
  for (const ch of command) {
    if (quote) {
      if (ch === quote) quote = undefined;
      else word += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      word ??= '';
    } else if (ch === ' ' || ch === '\t') {
      if (word !== undefined) argv.push(word);
      word = undefined;
    } else word = (word ?? '') + ch;
  }
  if (quote) throw new JobRefused(`the command has an unterminated ${quote} quote`);
  if (word !== undefined) argv.push(word);
  if (!argv.length) throw new JobRefused('the command is empty');
  const program = firstWord(command);
  if (/["']/.test(program))
    throw new JobRefused(`the program ${program} is quoted: name it unquoted, as the filter sees it`);
  return argv;
}

const firstWord = (command: string) => command.replace(/^[ \t]+/, '').split(/[ \t]/, 1)[0]!;

/** With or without a shell: a program named through '.' or '..' segments could leave the folder an allow pattern names. */
function refuseDotSegments(command: string): void {
  const program = firstWord(command);
  if (program.split(/[\\/]/).some((seg) => seg === '.' || seg === '..'))
    throw new JobRefused(`the program ${program} has a '.' or '..' segment: name it by its plain full path`);
}

/**
 * argv of the child: without use_shell a command is its own argv (programArgv); with it, or for a script,
 * the interpreter's "run this line" option gets the command, or the script's file is its argument.
 */
export function interpreterArgv(spec: JobSpec, scriptFile?: string): string[] {
  if (scriptFile === undefined) refuseDotSegments(spec.command);
  if (scriptFile === undefined && !spec.useShell) {
    if (spec.interpreter)
      throw new JobRefused(
        `interpreter "${spec.interpreter}" refused: commands run without a shell ([remote-commands] use_shell = false); send a script, or set use_shell = true for RPort's sh -c`,
      );
    return programArgv(spec.command);
  }
  const path = interpreterPath(spec);
  const flavour = flavourOf(path);
  if (scriptFile === undefined) {
    if (flavour === 'cmd') return [path, '/c', spec.command];
    if (flavour === 'powershell') return [path, '-NoProfile', '-NonInteractive', '-Command', spec.command];
    return [path, '-c', spec.command];
  }
  if (flavour === 'cmd') return [path, '/c', scriptFile];
  if (flavour === 'powershell')
    return [path, '-NoProfile', '-NonInteractive', '-ExecutionPolicy', 'Bypass', '-File', scriptFile];
  return [path, scriptFile];
}

function scriptExtension(path: string): string {
  const flavour = flavourOf(path);
  return flavour === 'cmd' ? '.bat' : flavour === 'powershell' ? '.ps1' : '.sh';
}

/** Kills the process and every process it started (its process group; on Windows its tree). */
export function killTree(pid: number): void {
  if (WINDOWS) {
    execFile('taskkill', ['/T', '/F', '/PID', String(pid)], { windowsHide: true, timeout: 10_000 }, () => {});
    return;
  }
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    // the group is gone already
  }
}

/** One stream's capture: the first `limit` bytes; the rest is read and dropped so the child never blocks on a full pipe. */
class Capture {
  private readonly chunks: Buffer[] = [];
  private size = 0;
  truncated = false;

  constructor(private readonly limit: number) {}

  /** The part of `chunk` that was kept (empty once the limit is reached). */
  add(chunk: Buffer): Buffer {
    const room = this.limit - this.size;
    if (chunk.length > room) this.truncated = true;
    const kept = chunk.length > room ? chunk.subarray(0, Math.max(0, room)) : chunk;
    if (kept.length) {
      this.chunks.push(kept);
      this.size += kept.length;
    }
    return kept;
  }

  result(): Buffer {
    // RPort's wording, so that a reader of either knows the cut.
    const marker = this.truncated
      ? [Buffer.from(`\n[maximum send_back_limit of ${this.limit} bytes exceeded: the rest was dropped]\n`)]
      : [];
    return Buffer.concat([...this.chunks, ...marker]);
  }
}

export interface RunningJob {
  pid: number;
  startedAt: number;
  done: Promise<JobOutcome>;
}

/**
 * Starts a command or script as the client's user: scripts are written to a private temp folder (0700) that
 * goes when the job ends. The timeout kills the whole process tree. Resolves once started, or throws
 * JobRefused (bad interpreter or cwd, spawn failure).
 */
export async function startJob(spec: JobSpec, onOutput: OutputListener): Promise<RunningJob> {
  if (spec.cwd) {
    const isDir = await stat(spec.cwd).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir) throw new JobRefused(`cwd ${spec.cwd} is not a folder on the client`);
  }
  let folder: string | undefined;
  let scriptFile: string | undefined;
  if (spec.isScript) {
    const path = interpreterPath(spec);
    folder = await mkdtemp(join(tmpdir(), 'rport-script-'));
    scriptFile = join(folder, `script${scriptExtension(path)}`);
    await writeFile(scriptFile, spec.command, { mode: 0o700, flag: 'wx' });
  }
  const removeScript = () =>
    folder ? rm(folder, { recursive: true, force: true }).catch(() => {}) : Promise.resolve();
  // Throws only for commands (a script's interpreter was checked above), so no script file is left behind.
  const argv = interpreterArgv(spec, scriptFile);
  const startedAt = Date.now();
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: spec.cwd || undefined,
    // Its own process group, so that a timeout can kill everything it started.
    detached: !WINDOWS,
    windowsHide: true,
    windowsVerbatimArguments: flavourOf(argv[0]!) === 'cmd',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const spawned = await new Promise<Error | undefined>((resolve) => {
    child.once('spawn', () => resolve(undefined));
    child.once('error', (err) => resolve(err));
  });
  if (spawned || child.pid === undefined) {
    await removeScript();
    throw new JobRefused(`cannot start ${argv[0]}: ${errorMessage(spawned)}`);
  }
  const pid = child.pid;
  const out = new Capture(spec.sendBackLimit);
  const err = new Capture(spec.sendBackLimit);
  child.stdout!.on('data', (b: Buffer) => {
    const kept = out.add(b);
    if (kept.length) onOutput('stdout', kept);
  });
  child.stderr!.on('data', (b: Buffer) => {
    const kept = err.add(b);
    if (kept.length) onOutput('stderr', kept);
  });

  const done = new Promise<JobOutcome>((resolve) => {
    let timedOut = false;
    const timer = deadline(spec.timeoutMs, 'job', () => {
      timedOut = true;
      killTree(pid);
    });
    let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
    let grace: Deadline | undefined;
    const finish = () => {
      timer.cancel();
      grace?.cancel();
      const { code, signal } = exit!;
      const error = timedOut
        ? `timed out after ${spec.timeoutMs / 1000}s: the process and the processes it started were killed`
        : signal
          ? `ended by signal ${signal}`
          : code !== 0
            ? `exit code ${code}`
            : '';
      void removeScript().then(() =>
        resolve({
          status: error ? 'failed' : 'successful',
          exitCode: code,
          error,
          startedAt,
          finishedAt: Date.now(),
          stdout: out.result(),
          stderr: err.result(),
        }),
      );
    };
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      // A child left behind may hold the pipes open: they are cut after a grace, the result does not wait for it.
      grace = deadline(PIPE_GRACE_MS, 'job output pipes', () => {
        child.stdout!.destroy();
        child.stderr!.destroy();
      });
    });
    child.once('close', () => {
      if (!exit) exit = { code: child.exitCode, signal: child.signalCode };
      finish();
    });
  });
  return { pid, startedAt, done };
}
