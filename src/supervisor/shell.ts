import { spawn } from 'node:child_process';
import { deadline } from '../timeout.js';

export interface CommandResult {
  code: number | null;
  output: string;
  timedOut: boolean;
}

/** Runs a shell command with a timeout (killed when it runs over), collecting its output. */
export function runCommand(command: string, env: NodeJS.ProcessEnv, timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child =
      process.platform === 'win32'
        ? spawn('powershell.exe', ['-NoProfile', '-NonInteractive', '-Command', command], {
            env: { ...process.env, ...env },
            windowsHide: true,
          })
        : spawn('/bin/sh', ['-c', command], { env: { ...process.env, ...env }, detached: true });
    let output = '';
    let timedOut = false;
    const collect = (b: Buffer) => {
      if (output.length < 4000) output += b.toString('utf8');
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const d = deadline(timeoutMs, command, () => {
      timedOut = true;
      try {
        if (process.platform === 'win32') child.kill();
        else process.kill(-child.pid!, 'SIGKILL'); // the whole process group, not just the shell
      } catch {
        // already gone
      }
    });
    child.on('error', (err) => {
      output += err.message;
    });
    child.on('close', (code) => {
      d.cancel();
      resolve({ code, output: output.trim(), timedOut });
    });
  });
}

/** The platform's way to restart the client service and to ask whether it is meant to run. */
export function platformCommands(service: string): { restart: string; running: string } {
  if (process.platform === 'win32') {
    return {
      restart: `Restart-Service -Name '${service}'`,
      running: `if ((Get-Service -Name '${service}').Status -ne 'Running') { exit 1 }`,
    };
  }
  return { restart: `systemctl restart ${service}`, running: `systemctl is-active --quiet ${service}` };
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
