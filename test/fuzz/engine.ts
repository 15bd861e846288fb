// A small coverage-guided fuzzer: fast-check generates structured inputs, a mutator (bit flips, dictionary
// tokens, splices) works on the corpus, and V8's own block coverage (node:inspector, precise coverage with
// counts) decides which inputs are kept: an input that reaches a block, or a count bucket of a block, not
// seen before joins the corpus. @jazzer.js/core would be the maintained choice, but its prebuilt native
// part needs glibc 2.38 and its older releases download at install time; fast-check and the inspector are
// pure JS and built in.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';

export const CORPUS_DIR = fileURLToPath(new URL('../../../test/fuzz/corpus/', import.meta.url));
export const CRASH_DIR = fileURLToPath(new URL('../../../test/fuzz/crashes/', import.meta.url));

export interface Target {
  name: string;
  /** Structured inputs, encoded as the bytes the target reads. */
  generate: fc.Arbitrary<Buffer>;
  /** Tokens the mutator inserts: keywords of the format under test. */
  dictionary: string[];
  maxLen: number;
  /** Script URLs whose coverage counts (the code under test and its parser dependencies). */
  cover: RegExp;
  /** Runs one input; throws (an Error naming the broken invariant) on a crash. */
  run(data: Buffer): Promise<void> | void;
  /** Checks made once after a batch (server still alive, no stack trace in its log). */
  check?(): Promise<void>;
  /** Inputs run at once (targets against a real process run several connections in parallel). */
  parallel?: number;
}

export interface Options {
  seconds: number;
  maxRuns: number;
  seed: number;
  /** Collect coverage and keep new inputs (npm run fuzz); off in npm test's short pass. */
  coverage: boolean;
  save: boolean;
}

export interface Result {
  replayed: number;
  runs: number;
  added: number;
  blocks: number;
}

export class Crash extends Error {
  constructor(
    readonly target: string,
    readonly input: Buffer,
    readonly cause: unknown,
    readonly file?: string,
  ) {
    const b64 = input.toString('base64');
    super(
      `${target}: ${cause instanceof Error ? cause.message : String(cause)}\n  input (base64, ${input.length} bytes): ${b64.length > 400 ? `${b64.slice(0, 400)}...` : b64}${file ? `\n  saved as ${file}` : ''}`,
    );
  }
}

/** Larger new inputs are used in the run but not kept: the corpus lives in the repository. */
const MAX_SAVED = 16 << 10;

export const hashOf = (b: Buffer) => createHash('sha1').update(b).digest('hex').slice(0, 16);

export function readCorpus(target: string): Buffer[] {
  const dir = join(CORPUS_DIR, target);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .sort()
    .map((f) => readFileSync(join(dir, f)));
}

function saveTo(dir: string, data: Buffer): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, hashOf(data));
  writeFileSync(file, data);
  return file;
}

/** Block coverage of the last input: "url|start-end|bucket" for every block that ran. */
class Coverage {
  private readonly session = new Session();
  private readonly seen = new Set<string>();

  constructor(private readonly cover: RegExp) {
    this.session.connect();
    this.post('Profiler.enable');
    this.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  }

  get size(): number {
    return this.seen.size;
  }

  // An in-thread session answers synchronously.
  private post(method: string, params?: object): any {
    let out: any;
    let error: Error | null = null;
    this.session.post(method, params, (err, res) => {
      error = err;
      out = res;
    });
    if (error) throw error;
    return out;
  }

  /** Takes (and resets) the counts; true when something new ran. */
  collect(): boolean {
    const { result } = this.post('Profiler.takePreciseCoverage') as {
      result: Array<{
        url: string;
        functions: Array<{ ranges: Array<{ startOffset: number; endOffset: number; count: number }> }>;
      }>;
    };
    let fresh = false;
    for (const script of result) {
      if (!this.cover.test(script.url)) continue;
      for (const fn of script.functions) {
        for (const r of fn.ranges) {
          if (r.count === 0) continue;
          const key = `${script.url}|${r.startOffset}-${r.endOffset}|${Math.min(8, 31 - Math.clz32(r.count))}`;
          if (!this.seen.has(key)) {
            this.seen.add(key);
            fresh = true;
          }
        }
      }
    }
    return fresh;
  }

  stop(): void {
    this.post('Profiler.stopPreciseCoverage');
    this.session.disconnect();
  }
}

const INTERESTING = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x22, 0x5b, 0x5d, 0x7b, 0x7d, 0x3d, 0x2c, 0x5c, 0x25];

/** One to four stacked mutations of a corpus entry. */
function mutate(rand: () => number, base: Buffer, corpus: Buffer[], dictionary: string[], maxLen: number): Buffer {
  const int = (n: number) => Math.floor(rand() * n);
  let b = Buffer.from(base);
  for (let k = 1 + int(4); k > 0; k--) {
    const at = int(b.length + 1);
    switch (int(8)) {
      case 0:
        if (b.length) b[at % b.length]! ^= 1 << int(8);
        break;
      case 1:
        if (b.length) b[at % b.length] = INTERESTING[int(INTERESTING.length)]!;
        break;
      case 2: {
        const bytes = Buffer.alloc(1 + int(8));
        for (let i = 0; i < bytes.length; i++) bytes[i] = int(256);
        b = Buffer.concat([b.subarray(0, at), bytes, b.subarray(at)]);
        break;
      }
      case 3:
        b = Buffer.concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + 1 + int(16)))]);
        break;
      case 4: {
        const len = 1 + int(32);
        const piece = b.subarray(at, at + len);
        b = Buffer.concat([b.subarray(0, at), ...Array<Buffer>(1 + int(8)).fill(piece), b.subarray(at)]);
        break;
      }
      case 5: {
        const other = corpus[int(corpus.length)] ?? b;
        b = Buffer.concat([b.subarray(0, at), other.subarray(int(other.length + 1))]);
        break;
      }
      default:
        if (dictionary.length)
          b = Buffer.concat([b.subarray(0, at), Buffer.from(dictionary[int(dictionary.length)]!), b.subarray(at)]);
    }
  }
  return b.length > maxLen ? b.subarray(0, maxLen) : b;
}

/** A deterministic generator (mulberry32), so that a failing pass can be rerun with its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Replays the target's corpus, then fuzzes it for o.seconds (or o.maxRuns inputs). Throws a Crash for the
 * first input that breaks an invariant, after saving it under test/fuzz/crashes/<target>/ when o.save.
 */
export async function fuzz(target: Target, o: Options): Promise<Result> {
  const corpus = readCorpus(target.name);
  const coverage = o.coverage && (target.parallel ?? 1) === 1 ? new Coverage(target.cover) : undefined;
  const rand = random(o.seed);
  let runs = 0;
  let added = 0;
  // An exception or rejection that escapes the target (a callback, a floating promise) is a crash too.
  let escaped: unknown;
  const onEscape = (err: unknown) => {
    escaped ??= err ?? new Error('unhandled rejection without a reason');
  };
  process.on('uncaughtException', onEscape);
  process.on('unhandledRejection', onEscape);
  const one = async (data: Buffer, keep: boolean) => {
    try {
      await target.run(data);
      await new Promise((r) => setImmediate(r));
      if (escaped !== undefined) throw escaped;
    } catch (err) {
      throw new Crash(target.name, data, err, o.save ? saveTo(join(CRASH_DIR, target.name), data) : undefined);
    }
    runs++;
    if (coverage?.collect() && keep) {
      corpus.push(data);
      added++;
      if (o.save && data.length <= MAX_SAVED) saveTo(join(CORPUS_DIR, target.name), data);
    }
  };
  // Inputs against another process run several at once; its coverage is not ours to see.
  const batch = async (inputs: Buffer[], keep: boolean) => {
    const n = target.parallel ?? 1;
    for (let i = 0; i < inputs.length; i += n)
      await Promise.all(inputs.slice(i, i + n).map((d) => one(d, keep && n === 1)));
    if (target.check) await target.check();
  };
  try {
    await batch(corpus.slice(), false);
    const replayed = runs;
    const end = performance.now() + o.seconds * 1000;
    let seed = o.seed;
    while (performance.now() < end && runs - replayed < o.maxRuns) {
      const inputs =
        rand() < 0.3 || corpus.length === 0
          ? fc.sample(target.generate, { numRuns: 20, seed: seed++ })
          : Array.from({ length: 20 }, () =>
              mutate(rand, corpus[Math.floor(rand() * corpus.length)]!, corpus, target.dictionary, target.maxLen),
            );
      await batch(inputs, true);
    }
    return { replayed, runs: runs - replayed, added, blocks: coverage?.size ?? 0 };
  } finally {
    coverage?.stop();
    process.off('uncaughtException', onEscape);
    process.off('unhandledRejection', onEscape);
  }
}

/** A stack frame as V8 prints it ("    at fn (file.js:1:2)"): never for a peer's or a log's eyes. */
export const STACK_FRAME = /^\s+at .+(:\d+:\d+\)?|\(native\)|\(<anonymous>\))$/m;

/** Bad input gets one clear line: not empty, no line break, no stack frame. */
export function assertOneLine(message: string, what: string): void {
  if (!message.trim() || /[\r\n]/.test(message) || STACK_FRAME.test(message))
    throw new Error(`${what} is not one clear line: ${JSON.stringify(message)}`);
}
