import { execFile } from 'node:child_process';
import { existsSync, unlinkSync, writeFileSync } from 'node:fs';
import { win32 } from 'node:path';
import { parseArgs } from '../config/args.js';
import { DEFAULT_CLIENT_CONF } from '../config/client-config.js';
import { ConfigError } from '../config/loader.js';
import { errorMessage } from '../log.js';
import { packageRequire } from '../runtime/package-require.js';
import { isSingleExecutable } from '../runtime/sea.js';

// Windows paths, also when --print shows the steps elsewhere.
const { dirname, join } = win32;

/** The service name; packaging/windows/rport-watchdog.ps1 restarts the service of this name. */
export const SERVICE_NAME = 'rport';
export const SERVICE_USAGE = `Usage: rport service install [-c CONF] | uninstall | start | stop   (Windows, as Administrator)

install    registers the Windows service "${SERVICE_NAME}" (automatic start) running this rport.exe with
           -c CONF (default ${DEFAULT_CLIENT_CONF}); recovery: restart after 15 s, 15 s, 60 s,
           failure count reset after a day, also when rport exits with an error code
uninstall  stops and removes it
start/stop starts or stops it
Print the steps without running them with --print.
`;

export interface ServiceStep {
  describe: string;
  /** A program and its arguments, or a file to write (null: remove). */
  command?: [string, ...string[]];
  file?: { path: string; content: Buffer | string | null };
}

const xmlText = (s: string) =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/**
 * A Windows service must answer the service control manager (SCM), which a Node program cannot do by
 * itself. WinSW, the service wrapper that node-windows uses, does: it runs rport.exe as its child, reports
 * to the SCM, and on install sets the recovery actions from <onfailure>. The release embeds node-windows's
 * winsw.exe (and its .config) in rport.exe; `service install` writes it beside as rport-service.exe.
 *
 * WinSW's configuration: rport.exe -c CONF, automatic start, restarts on failure, logs beside.
 */
export function wrapperXml(exe: string, conf: string): string {
  return `<service>
  <id>${SERVICE_NAME}</id>
  <name>RPort client</name>
  <description>rport client: keeps a connection to rportd (reverse tunnels). Installed by rport service install.</description>
  <executable>${xmlText(exe)}</executable>
  <arguments>-c "${xmlText(conf)}"</arguments>
  <startmode>Automatic</startmode>
  <delayedAutoStart/>
  <stoptimeout>10 sec</stoptimeout>
  <onfailure action="restart" delay="15 sec"/>
  <onfailure action="restart" delay="15 sec"/>
  <onfailure action="restart" delay="60 sec"/>
  <resetfailure>1 day</resetfailure>
  <logpath>${xmlText(join(dirname(exe), 'logs'))}</logpath>
  <log mode="roll"/>
</service>
`;
}

/** The steps of an action for the rport.exe at `exe`; `assets` reads the wrapper from the executable. */
export function serviceSteps(
  action: string,
  exe: string,
  conf: string,
  assets: (name: string) => Buffer,
): ServiceStep[] {
  const dir = dirname(exe);
  const wrapper = join(dir, 'rport-service.exe');
  const sc = 'sc.exe';
  switch (action) {
    case 'install':
      return [
        { describe: `service wrapper ${wrapper} (WinSW)`, file: { path: wrapper, content: assets('winsw.exe') } },
        { describe: `${wrapper}.config`, file: { path: `${wrapper}.config`, content: assets('winsw.exe.config') } },
        {
          describe: `service configuration ${join(dir, 'rport-service.xml')}`,
          file: { path: join(dir, 'rport-service.xml'), content: wrapperXml(exe, conf) },
        },
        { describe: `register service ${SERVICE_NAME} with its recovery actions`, command: [wrapper, 'install'] },
        // Recovery actions also when rport exits with an error code, not only when it crashes.
        { describe: 'recovery actions on non-crash failures too', command: [sc, 'failureflag', SERVICE_NAME, '1'] },
      ];
    case 'uninstall':
      return [
        { describe: `stop service ${SERVICE_NAME}`, command: [wrapper, 'stop'] },
        { describe: `remove service ${SERVICE_NAME}`, command: [wrapper, 'uninstall'] },
        { describe: `remove ${wrapper}`, file: { path: wrapper, content: null } },
        { describe: `remove ${wrapper}.config`, file: { path: `${wrapper}.config`, content: null } },
        { describe: 'remove rport-service.xml', file: { path: join(dir, 'rport-service.xml'), content: null } },
      ];
    case 'start':
    case 'stop':
      return [{ describe: `${action} service ${SERVICE_NAME}`, command: [sc, action, SERVICE_NAME] }];
    default:
      throw new ConfigError(
        `unknown service action "${action}": use install, uninstall, start or stop (see rport service --help)`,
      );
  }
}

function runStep(step: ServiceStep): Promise<string> {
  if (step.file) {
    if (step.file.content === null) {
      if (existsSync(step.file.path)) unlinkSync(step.file.path);
    } else writeFileSync(step.file.path, step.file.content);
    return Promise.resolve('');
  }
  const [file, ...args] = step.command!;
  return new Promise((resolve, reject) => {
    execFile(file, args, { timeout: 60_000, windowsHide: true }, (err, stdout, stderr) => {
      const out = `${stdout}${stderr}`.trim().replace(/\s+/g, ' ');
      if (err) reject(new Error(err.killed ? 'timed out after 60s' : out || errorMessage(err)));
      else resolve(out);
    });
  });
}

function seaAsset(name: string): Buffer {
  const sea = packageRequire('node:sea') as { getRawAsset(n: string): ArrayBuffer };
  return Buffer.from(sea.getRawAsset(name));
}

/** `rport service ...`: exit 0 done, 1 a step failed, 2 bad usage or not possible here. */
export async function serviceCommand(argv: string[]): Promise<number> {
  const args = parseArgs(argv, [], ['print']);
  if (args.help) return (process.stdout.write(SERVICE_USAGE), 0);
  const action = args.positional[0];
  if (!action)
    throw new ConfigError(
      'rport service needs an action: install, uninstall, start or stop (see rport service --help)',
    );
  const print = args.flags.get('print')?.at(-1) === 'true';
  const conf = args.config ?? DEFAULT_CLIENT_CONF;
  // Built once without the wrapper's bytes: checks the action before anything else is said.
  const planned = serviceSteps(action, process.execPath, conf, () => Buffer.alloc(0));
  if (print) {
    for (const s of planned) {
      process.stdout.write(
        s.command
          ? `${s.command.map((a) => (/\s/.test(a) ? `"${a}"` : a)).join(' ')}\n`
          : `${s.file!.content === null ? 'remove' : 'write'} ${s.file!.path}\n`,
      );
    }
    return 0;
  }
  if (process.platform !== 'win32')
    throw new ConfigError(
      `rport service is for Windows; on Linux the rport package installs rport.service (systemctl enable --now rport)`,
    );
  if (!isSingleExecutable())
    throw new ConfigError(
      'rport service needs rport.exe from the release (it carries the service wrapper); from a checkout use --print',
    );
  const steps = serviceSteps(action, process.execPath, conf, seaAsset);
  if (action === 'install' && !existsSync(conf))
    throw new ConfigError(
      `${conf} does not exist: write it first with rport init --server HOST:PORT --auth ID:PASSWORD`,
    );
  for (const step of steps) {
    try {
      const out = await runStep(step);
      process.stdout.write(`done: ${step.describe}${out ? `: ${out}` : ''}\n`);
    } catch (err) {
      process.stderr.write(`failed: ${step.describe}: ${errorMessage(err)}\n`);
      // Stopping a service that is not running is no reason to keep it installed.
      if (!(action === 'uninstall' && step.command?.[1] === 'stop')) return 1;
    }
  }
  return 0;
}
