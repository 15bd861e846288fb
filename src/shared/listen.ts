import type { AddressInfo, Server } from 'node:net';

/** Listens, or rejects with one line that names the address, what it is for (`what`: the config key) and the fix. */
export function listen(server: Server, host: string, port: number, what: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    // Kept after listening: an 'error' then is a failed accept() (the one connection is lost, the server
    // keeps listening), which must not become an uncaught exception.
    server.on('error', (err: NodeJS.ErrnoException) => {
      const hint =
        err.code === 'EADDRINUSE'
          ? 'another process uses it: stop it or choose another port'
          : err.code === 'EACCES'
            ? 'ports below 1024 need root'
            : err.message;
      reject(new Error(`cannot listen on ${host}:${port} for ${what}: ${hint}`));
    });
    server.listen(port, host, () => resolve(server.address() as AddressInfo));
  });
}

/** Stops listening and ends every open connection, idle or not (event streams included). */
export function closeServer(server: Server & { closeAllConnections?: () => void }): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections?.();
  });
}
