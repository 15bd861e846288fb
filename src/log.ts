import { writeSync } from 'node:fs';
import { openForAppend } from './files.js';

export const LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type Level = (typeof LEVELS)[number];

/**
 * Where log lines go: a file opened for appending, or stderr. Writes are synchronous so no line is lost
 * on exit; the file stays open for the life of the process.
 */
export class LogSink {
  private constructor(private readonly out: (line: string) => void) {}

  static stderr(): LogSink {
    return LogSink.fd(2);
  }

  /** Throws with the OS reason when the file cannot be opened; callers turn that into a config error. */
  static file(path: string): LogSink {
    return LogSink.fd(openForAppend(path, 0o640));
  }

  /** Each line to a function: for a server or client run inside another program (the tests run them so). */
  static lines(out: (line: string) => void): LogSink {
    return new LogSink(out);
  }

  private static fd(fd: number): LogSink {
    return new LogSink((line) => {
      try {
        writeSync(fd, line + '\n');
      } catch {
        // A full disk must not take the process down; the line is dropped.
      }
    });
  }

  write(line: string): void {
    this.out(line);
  }
}

function timestamp(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

/**
 * What changes how a line reads without being seen: control characters but tab (Cc), format characters
 * (Cf: bidi overrides and isolates, zero-width spaces and joiners, the soft hyphen, the BOM), line and
 * paragraph separators (Zl, Zp) and lone surrogates (Cs).
 */
const CONTROLS = /[^\P{Cc}\t]|[\p{Cf}\p{Zl}\p{Zp}\p{Cs}]/gu;
const NAMED: Record<string, string> = { '\n': '\\n', '\r': '\\r' };

function escapeOne(c: string): string {
  const code = c.codePointAt(0)!;
  if (NAMED[c]) return NAMED[c];
  if (code <= 0xff) return `\\x${code.toString(16).padStart(2, '0')}`;
  return code <= 0xffff ? `\\u${code.toString(16).padStart(4, '0')}` : `\\u{${code.toString(16)}}`;
}

/**
 * One message, one line, read as written: a peer's value (an SSH user name, a client name or tag) with a
 * newline, a terminal escape or a bidi override could otherwise forge log lines, rewrite a terminal or
 * show a line in another order than it holds. Such characters become \n, \r, \xHH, \uHHHH or \u{HHHHH}.
 */
export function escapeControls(msg: string): string {
  return msg.replace(CONTROLS, escapeOne);
}

export class Logger {
  constructor(
    private readonly sink: LogSink,
    readonly level: Level,
    private readonly component: string,
  ) {}

  child(component: string): Logger {
    return new Logger(this.sink, this.level, component);
  }

  enabled(level: Level): boolean {
    return LEVELS.indexOf(level) <= LEVELS.indexOf(this.level);
  }

  private emit(level: Level, msg: string): void {
    if (!this.enabled(level)) return;
    this.sink.write(
      `${timestamp(new Date())} ${level.toUpperCase().padEnd(5)} ${this.component}: ${escapeControls(msg)}`,
    );
  }

  error(msg: string): void {
    this.emit('error', msg);
  }
  warn(msg: string): void {
    this.emit('warn', msg);
  }
  info(msg: string): void {
    this.emit('info', msg);
  }
  debug(msg: string): void {
    this.emit('debug', msg);
  }
}

/** The message of anything thrown, without a stack trace. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message || err.name;
  return String(err);
}

/**
 * At most one line per interval for a kind of event a peer can repeat at will (failed logins, refused
 * connections): the first is written at once, the rest are counted and summed up in one line when the
 * interval ends, so a flood cannot fill the disk and the operator still sees how many there were.
 */
export class LogLimiter {
  private readonly held = new Map<string, { count: number; last: string }>();

  constructor(
    private readonly log: Logger,
    private readonly intervalMs = 60_000,
  ) {}

  warn(kind: string, msg: string): void {
    const h = this.held.get(kind);
    if (h) {
      h.count++;
      h.last = msg;
      return;
    }
    this.log.warn(msg);
    this.held.set(kind, { count: 0, last: '' });
    setTimeout(() => {
      const held = this.held.get(kind)!;
      this.held.delete(kind);
      if (held.count > 0)
        this.log.warn(
          `${held.count} more like this in the last ${this.intervalMs / 1000}s (${kind}); the last: ${held.last}`,
        );
    }, this.intervalMs).unref();
  }
}
