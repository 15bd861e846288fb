import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { ClientJobs } from '../../src/client/jobs/client-jobs.js';
import { CLIENT_KEYS, clientConfig, type CommandsConfig } from '../../src/config/client-config.js';
import { loadConfig } from '../../src/config/loader.js';
import { RPORT_CLIENT_NAMES } from '../../src/config/rport-names.js';
import { Logger, LogSink } from '../../src/log.js';
import { ControlChannel } from '../../src/transport/control-channel.js';
import { METHOD, type JobDone } from '../../src/transport/protocol.js';
import { cleanup, tmpDir, writeFile } from '../../harness/procs.js';

/** The [client] section of the configs in these tests: enough to load, never dialed. */
export const CLIENT_BASE = '[client]\nserver = "127.0.0.1:9"\nauth = "c:p"\nid = "x"\n';

/** [remote-commands] and friends as rport reads them from a file. */
export function commandsOf(dir: string, text: string): CommandsConfig {
  return clientConfig(
    loadConfig(
      CLIENT_KEYS,
      writeFile(dir, `c${Math.random()}.conf`, CLIENT_BASE + text),
      new Map(),
      RPORT_CLIENT_NAMES,
    ),
  ).commands;
}

/**
 * A server written in the test: a control channel to ClientJobs, sending what a compromised rportd might.
 * `ended` has the end of every job the client delivered, by jid.
 */
export async function hostileServer(
  t: TestContext,
  cfg: CommandsConfig,
): Promise<ControlChannel & { ended: Map<string, JobDone> }> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const accepted = new Promise<Socket>((r) => srv.once('connection', r));
  const sock = connect((srv.address() as AddressInfo).port, '127.0.0.1');
  const peer = await accepted;
  const log = new Logger(LogSink.file(join(tmpDir(t), 'client.log')), 'debug', 'commands');
  const jobs = new ClientJobs(cfg, log);
  const clientSide = new ControlChannel(sock);
  jobs.attach(clientSide);
  jobs.online(clientSide);
  const server = Object.assign(new ControlChannel(peer), { ended: new Map<string, JobDone>() });
  server.handle(METHOD.jobOutput, () => null);
  server.handle(METHOD.jobPart, () => null);
  server.handle(METHOD.jobDone, (d) => {
    server.ended.set((d as JobDone).jid, d as JobDone);
    return null;
  });
  cleanup(t, () => {
    jobs.stop();
    server.close();
    clientSide.close();
    srv.close();
  });
  return server;
}
