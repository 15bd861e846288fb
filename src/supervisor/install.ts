import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeFileAtomic } from '../files.js';
import { isSingleExecutable } from '../runtime/sea.js';
import { runCommand } from './shell.js';

/** Bound on one install step's command (systemctl, schtasks): they take seconds, or they hang. */
const INSTALL_COMMAND_TIMEOUT_MS = 30_000;

export const TASK_NAME = 'RPort-Watchdog';

/**
 * The command a scheduler runs, checking once: this very node and script, or the release's executable (one
 * for the client and the watchdog: its path, whatever link it was called by, and its watchdog command).
 */
function selfCommand(args: string[]): string[] {
  const self = isSingleExecutable()
    ? [process.execPath, 'watchdog']
    : [process.execPath, fileURLToPath(new URL('../cli/rport-watchdog.js', import.meta.url))];
  return [...self, 'run', '--once', ...args];
}

const quote = (s: string) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);
const winQuote = (s: string) => (/[\s"]/.test(s) ? `"${s.replace(/"/g, '\\"')}"` : s);

export interface InstallStep {
  describe: string;
  /** A shell command to run, or a file to write or remove. */
  command?: string;
  file?: { path: string; content: string | null };
}

/** Windows: a scheduled task as SYSTEM every 5 minutes and one at start-up. Elsewhere: a cron file. */
export function installSteps(args: string[], cronFile: string): InstallStep[] {
  const cmd = selfCommand(args);
  if (process.platform === 'win32') {
    const tr = cmd.map(winQuote).join(' ');
    return [
      {
        describe: `scheduled task ${TASK_NAME} every 5 minutes as SYSTEM`,
        command: `schtasks /Create /F /TN "${TASK_NAME}" /SC MINUTE /MO 5 /RU SYSTEM /RL HIGHEST /TR '${tr}'`,
      },
      {
        describe: `scheduled task ${TASK_NAME}-Startup at start-up as SYSTEM`,
        command: `schtasks /Create /F /TN "${TASK_NAME}-Startup" /SC ONSTART /DELAY 0005:00 /RU SYSTEM /RL HIGHEST /TR '${tr}'`,
      },
    ];
  }
  const line = cmd.map(quote).join(' ');
  const content = `# rport-watchdog: restarts a hung rport client (installed by rport-watchdog install)\nSHELL=/bin/sh\n*/5 * * * * root ${line} >/dev/null 2>&1\n@reboot root sleep 300 && ${line} >/dev/null 2>&1\n`;
  return [{ describe: `cron file ${cronFile}`, file: { path: cronFile, content } }];
}

export function uninstallSteps(cronFile: string): InstallStep[] {
  if (process.platform === 'win32') {
    return [
      { describe: `remove scheduled task ${TASK_NAME}`, command: `schtasks /Delete /F /TN "${TASK_NAME}"` },
      {
        describe: `remove scheduled task ${TASK_NAME}-Startup`,
        command: `schtasks /Delete /F /TN "${TASK_NAME}-Startup"`,
      },
    ];
  }
  return [{ describe: `remove cron file ${cronFile}`, file: { path: cronFile, content: null } }];
}

/** Carries out the steps; returns the lines to print. A cron folder that does not exist gets the content printed instead. */
export async function applySteps(steps: InstallStep[], print: boolean): Promise<{ ok: boolean; lines: string[] }> {
  const lines: string[] = [];
  let ok = true;
  for (const s of steps) {
    if (s.file && (print || (s.file.content !== null && !existsSync(dirname(s.file.path))))) {
      lines.push(
        s.file.content === null
          ? `would remove ${s.file.path}`
          : `${print ? '' : `${dirname(s.file.path)} does not exist (no cron here?); `}add this to your crontab or scheduler:\n${s.file.content}`,
      );
      continue;
    }
    if (print) {
      lines.push(s.command!);
      continue;
    }
    if (s.file) {
      try {
        if (s.file.content === null) {
          if (existsSync(s.file.path) && readFileSync(s.file.path, 'utf8').includes('rport-watchdog'))
            unlinkSync(s.file.path);
        } else writeFileAtomic(s.file.path, s.file.content, { mode: 0o644 });
        lines.push(`done: ${s.describe}`);
      } catch (err) {
        ok = false;
        lines.push(
          `failed: ${s.describe}: ${(err as NodeJS.ErrnoException).code ?? err} (run as root, or use --print)`,
        );
      }
      continue;
    }
    const r = await runCommand(s.command!, {}, INSTALL_COMMAND_TIMEOUT_MS);
    ok &&= r.code === 0;
    lines.push(`${r.code === 0 ? 'done' : 'failed'}: ${s.describe}${r.output ? `: ${r.output}` : ''}`);
  }
  return { ok, lines };
}
