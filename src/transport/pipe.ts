import type { Socket } from 'node:net';
import type ssh2 from 'ssh2';
import { transportFull } from './ws-stream.js';

const EMPTY = Buffer.alloc(0);

/**
 * Carries one TCP connection over one SSH channel, both ways; both ends of a tunnel use it.
 *
 * TCP ends in two ways and each must reach the far side as it happened. A clean end (FIN) goes over as
 * EOF and half-closes the far socket, so the other direction keeps flowing. An abort (a reset, a killed
 * process, a lost connection) goes over as CLOSE without EOF, since SSH has no reset, and the far side
 * resets its socket: a truncated transfer must never look complete. Stream pipes give backpressure.
 */
export function pipeSocketChannel(sock: Socket, channel: ssh2.Channel): void {
  // ssh2 ends the channel's readable side on EOF and on CLOSE alike; its incoming state when it does
  // so is what tells a clean end from an abort.
  let eofReceived = false;
  const push = channel.push;
  channel.push = function (this: ssh2.Channel, chunk: unknown, encoding?: BufferEncoding): boolean {
    if (chunk === null && (channel.incoming as { state?: string }).state === 'eof') eofReceived = true;
    return push.call(this, chunk, encoding);
  };
  let eofSent = false;
  const abort = () => {
    if (!sock.destroyed) sock.resetAndDestroy();
    channel.close();
  };

  // The socket's data goes into the channel while both the channel (its window) and the connection's
  // WebSocket (transportFull) have room; otherwise the socket waits, and TCP slows its sender.
  const flow = () => {
    if (sock.destroyed || channel.writableNeedDrain || transportFull(channel, flow)) return;
    sock.resume();
  };
  const onData = (chunk: Buffer) => {
    channel.write(chunk);
    if (channel.writableNeedDrain || transportFull(channel, flow)) sock.pause();
  };
  sock.on('data', onData);
  channel.on('drain', flow);
  // A closed channel takes no more writes (ssh2 would keep them queued forever), as pipe() unpipes.
  channel.once('close', () => sock.off('data', onData));
  flow();
  // EOF goes after what is still queued for the channel; channel.end() would CLOSE a server-side channel too.
  sock.on('end', () => {
    if (!channel.writable) return;
    channel.write(EMPTY, () => {
      channel.eof();
      eofSent = true;
      if (sock.destroyed) channel.close();
    });
  });
  // An error, or a socket destroyed before its peer finished sending, is an abort: CLOSE without EOF.
  sock.on('error', () => channel.close());
  sock.on('close', () => {
    if (eofSent || !sock.readableEnded) channel.close();
  });

  channel.pipe(sock, { end: false });
  channel.on('end', () => (eofReceived ? sock.end() : abort()));
  channel.on('close', () => {
    if (!eofReceived) abort();
    else if (!sock.destroyed) sock.end();
  });
  channel.on('error', abort);
}
