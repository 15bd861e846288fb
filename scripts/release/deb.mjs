// rport_<version>_<arch>.deb and rportd_<version>_<arch>.deb with dpkg-deb (xz): the single executable and
// its add-ons in /usr/lib/<pkg>/ (linked from /usr/bin under each command's name), the systemd unit,
// /etc/rport/<pkg>.conf as a conffile, maintainer scripts from packaging/deb/.
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const PACKAGES = {
  rport: {
    // One executable: rport-watchdog is rport called by that name.
    commands: ['rport', 'rport-watchdog'],
    // As StateDirectoryMode in the unit: state.json is read by rport-watchdog running as another user.
    stateMode: '0755',
    // postinst's next step after a fresh install (rport init exists; rportd has no init).
    next: 'rport init --server HOST:PORT --fingerprint SHA256:... --auth ID:PASSWORD --force (writes /etc/rport/rport.conf)',
    description: 'rport client: reverse tunnels to rportd, with systemd watchdog integration\n'
      + ' Keeps a WebSocket+SSH connection to rportd alive through server restarts, dead links and bad\n'
      + ' networks. Installs rport.service (Type=notify, WatchdogSec) and rport-watchdog.',
  },
  rportd: {
    commands: ['rportd'],
    // The host key lives there (StateDirectoryMode in rportd.service).
    stateMode: '0700',
    next: 'set auth in /etc/rport/rportd.conf (every key: rportd --help)',
    description: 'rportd: the rport server\n'
      + ' Accepts rport clients over WebSocket+SSH, keeps a registry of them, opens tunnels and serves a\n'
      + ' REST API and a dashboard. Installs rportd.service.',
  },
};

function put(file, text, mode) {
  writeFileSync(file, text);
  chmodSync(file, mode);
}

/** Builds both packages (or the client only when rportd was not built); returns their file names. */
export function buildDebs({ root, out, work, version, arch, executables }) {
  const names = [];
  for (const [pkg, spec] of Object.entries(PACKAGES)) {
    if (!executables[pkg]) continue;
    const stage = join(work, pkg);
    rmSync(stage, { recursive: true, force: true });
    const lib = join(stage, 'usr/lib', pkg);
    for (const d of ['DEBIAN', 'usr/bin', `usr/lib/${pkg}`, 'lib/systemd/system', 'etc/rport', `usr/share/doc/${pkg}`]) mkdirSync(join(stage, d), { recursive: true });
    const { exe, assets } = executables[pkg];
    copyFileSync(exe, join(lib, pkg));
    chmodSync(join(lib, pkg), 0o755);
    // Beside the executable: loaded from there, so nothing is extracted under ProtectSystem=strict.
    for (const [name, src] of Object.entries(assets)) {
      copyFileSync(src, join(lib, name));
      chmodSync(join(lib, name), 0o644);
    }
    for (const c of spec.commands) symlinkSync(`../lib/${pkg}/${pkg}`, join(stage, 'usr/bin', c));
    put(join(stage, 'lib/systemd/system', `${pkg}.service`), readFileSync(join(root, 'packaging/systemd', `${pkg}.service`), 'utf8'), 0o644);
    put(join(stage, 'etc/rport', `${pkg}.conf`), readFileSync(join(root, 'packaging/conf', `${pkg}.conf`), 'utf8'), 0o644);
    put(join(stage, `usr/share/doc/${pkg}/copyright`), `rport ${version}, MIT license. Includes Node.js (MIT) and its bundled dependencies.\n`, 0o644);
    const control = `Package: ${pkg}
Version: ${version}
Architecture: ${arch}
Maintainer: rport maintainers <rport@localhost>
Section: net
Priority: optional
Depends: adduser
Homepage: https://github.com/rport/rport
Description: ${spec.description}
`;
    put(join(stage, 'DEBIAN/control'), control, 0o644);
    put(join(stage, 'DEBIAN/conffiles'), `/etc/rport/${pkg}.conf\n`, 0o644);
    for (const script of ['postinst', 'prerm', 'postrm']) {
      const text = readFileSync(join(root, 'packaging/deb', script), 'utf8').replaceAll('@PKG@', pkg).replaceAll('@STATE_MODE@', spec.stateMode).replaceAll('@NEXT@', spec.next);
      put(join(stage, 'DEBIAN', script), text, 0o755);
    }
    const file = `${pkg}_${version}_${arch}.deb`;
    execFileSync('dpkg-deb', ['--root-owner-group', '-Zxz', '--build', stage, join(out, file)], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 600_000 });
    names.push(file);
  }
  return names;
}
