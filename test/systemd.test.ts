import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { cleanup, eventually, HANG_REQUEST, startServer, tmpDir, writeFile, CLIENT_AUTH } from '../harness/procs.js';
import { systemdUnavailable, UserSystemd } from '../harness/systemd.js';

const RPORT = fileURLToPath(new URL('../src/cli/rport.js', import.meta.url));
const skip = systemdUnavailable();

function unit(conf: string, log: string, watchdogSec: number, env: string[] = []): string {
  return `[Unit]
Description=rport client under test
DefaultDependencies=no
[Service]
Type=notify
NotifyAccess=main
ExecStart=${process.execPath} ${RPORT} -c ${conf}
${env.map((e) => `Environment=${e}`).join('\n')}
WatchdogSec=${watchdogSec}
Restart=always
RestartSec=100ms
StandardOutput=append:${log}
StandardError=append:${log}
ExecStopPost=/bin/sh -c 'echo "ExecStopPost SERVICE_RESULT=$$SERVICE_RESULT" >> ${log}'
`;
}

/** CLOCK_MONOTONIC in ms, the clock of systemd's ...TimestampMonotonic properties (which are in µs). */
const monotonicMs = () => Number(process.hrtime.bigint() / 1_000_000n);

/**
 * Polls until the unit runs under a new main pid; returns it with when systemd started it (CLOCK_MONOTONIC
 * ms, systemd's own record): durations from it do not include how long the polling took to notice.
 */
async function restartedFrom(
  sd: UserSystemd,
  name: string,
  oldPid: string,
  ms: number,
): Promise<{ pid: string; startedAt: number }> {
  return eventually(
    async () => {
      // systemctl prints properties in its own order, not the order asked: read them by name.
      const text = await sd.systemctl(
        'show',
        '-p',
        'MainPID',
        '-p',
        'SubState',
        '-p',
        'ExecMainStartTimestampMonotonic',
        name,
      );
      const p = Object.fromEntries(
        text.split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      const pid = p.MainPID!;
      return pid !== oldPid && pid !== '0' && p.SubState === 'running'
        ? { pid, startedAt: Number(p.ExecMainStartTimestampMonotonic) / 1000 }
        : undefined;
    },
    ms,
    `${name} restarted by systemd`,
  );
}

test(
  'under a real systemd: Type=notify starts at once, stays up while healthy, StatusText shows the last message, a frozen client is restarted',
  { skip },
  async (t) => {
    const server = await startServer(t);
    const dir = tmpDir(t);
    const conf = writeFile(
      dir,
      'rport.conf',
      `[client]\nserver = "127.0.0.1:${server.port}"\nauth = "${CLIENT_AUTH}"\nid = "systemd-client"\ndata_dir = "${dir}/data"\n[connection]\nkeep_alive = "3m"\nwatchdog_integration = true\n[logging]\nlog_level = "debug"\n`,
    );
    const log = join(dir, 'service.log');
    const sd = await UserSystemd.start((fn) => cleanup(t, fn));
    const WDSEC = 3;
    sd.writeUnit('rport.service', unit(conf, log, WDSEC));
    await sd.systemctl('start', 'rport.service'); // returns once READY=1 arrived
    assert.equal(await sd.show('rport.service', 'ActiveState'), 'active');
    const pid = await sd.show('rport.service', 'MainPID');
    assert.match(
      readFileSync(log, 'utf8'),
      /DEBUG watchdog: Using NOTIFY_SOCKET \/\S+ for systemd watchdog integration/,
    );

    // keep_alive is 3m, far above WatchdogSec=3: only the in-step heartbeats keep systemd from killing it.
    await new Promise((r) => setTimeout(r, WDSEC * 3 * 1000));
    assert.equal(await sd.show('rport.service', 'MainPID'), pid, 'same process after 3 x WatchdogSec');
    assert.equal(await sd.show('rport.service', 'NRestarts'), '0');
    assert.match(
      await sd.show('rport.service', 'StatusText'),
      new RegExp(`^connected to 127\\.0\\.0\\.1:${server.port} within \\S+$`),
    );

    const frozenAt = monotonicMs();
    process.kill(Number(pid), 'SIGSTOP');
    const r = await restartedFrom(sd, 'rport.service', pid, (WDSEC + 5) * 1000);
    const took = r.startedAt - frozenAt;
    t.diagnostic(`restarted ${took}ms after the freeze`);
    assert.ok(took <= (WDSEC + 2) * 1000, `restarted ${took}ms after the freeze (WatchdogSec=${WDSEC})`);
    assert.match(readFileSync(log, 'utf8'), /ExecStopPost SERVICE_RESULT=watchdog/);
    await eventually(
      async () => (/^connected to/.test(await sd.show('rport.service', 'StatusText')) ? true : undefined),
      5000,
      'the new process connected',
    );
    await sd.systemctl('stop', 'rport.service');
    assert.match(readFileSync(log, 'utf8'), /INFO {2}client: stopped/);
    await sd.stop();
    assert.ok(!existsSync(sd.dir), `${sd.dir}: the harness leaves nothing behind in /var/tmp`);
  },
);

test(
  'under a real systemd: a connection step that hangs, with keep_alive = 3m and WatchdogSec = 10, is restarted within 12 s',
  { skip },
  async (t) => {
    const server = await startServer(t);
    const dir = tmpDir(t);
    const conf = writeFile(
      dir,
      'rport.conf',
      `[client]\nserver = "127.0.0.1:${server.port}"\nauth = "${CLIENT_AUTH}"\ndata_dir = "${dir}/data"\n[connection]\nkeep_alive = "3m"\nconnect_timeout = "1s"\nwatchdog_integration = true\n`,
    );
    const log = join(dir, 'service.log');
    const sd = await UserSystemd.start((fn) => cleanup(t, fn));
    sd.writeUnit('hang.service', unit(conf, log, 10, [`NODE_OPTIONS=${HANG_REQUEST.NODE_OPTIONS}`]));
    await sd.systemctl('start', 'hang.service');
    const pid = await sd.show('hang.service', 'MainPID');
    const firstStart = Number(await sd.show('hang.service', 'ExecMainStartTimestampMonotonic')) / 1000;
    const r = await restartedFrom(sd, 'hang.service', pid, 20_000);
    // Between systemd's own start times of the two processes: not how long the test took to see them.
    const took = r.startedAt - firstStart;
    t.diagnostic(`restarted ${took}ms after the hang began`);
    assert.ok(took <= 12_000, `restarted ${took}ms after the hang began`);
    assert.ok(took > 5000, 'not before systemd had a reason to');
    const text = readFileSync(log, 'utf8');
    assert.match(text, /connection step "connection request" is past its deadline: withholding watchdog heartbeats/);
    assert.match(text, /ExecStopPost SERVICE_RESULT=watchdog/);
    await sd.systemctl('stop', 'hang.service');
  },
);
