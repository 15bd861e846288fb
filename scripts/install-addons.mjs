// npm's install hook: the sd_notify add-on is for systemd and malloc_tune for glibc, so both are built on
// Linux only. Elsewhere (Windows, macOS) npm ci needs no compiler for this package; rport runs without
// them and complains only when NOTIFY_SOCKET is set (src/watchdog/sd-notify.ts).
import { spawnSync } from 'node:child_process';

if (process.platform !== 'linux') {
  process.stdout.write(
    `rport: not building the sd_notify and malloc_tune add-ons on ${process.platform} (systemd is Linux-only)\n`,
  );
  process.exit(0);
}
// npm tells its scripts where its own node-gyp is; outside npm, the one on PATH.
const gyp = process.env.npm_config_node_gyp;
const r = gyp
  ? spawnSync(process.execPath, [gyp, 'rebuild'], { stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild'], { stdio: 'inherit' });
process.exit(r.status ?? 1);
