import type { Duplex } from 'node:stream';
import { createWebSocketStream, type WebSocket } from 'ws';
import { keepFreedMemory } from './native.js';

/**
 * The WebSocket as the byte stream ssh2 runs on, for both ends. The stream only ends its readable side
 * when the WebSocket closes and never emits 'close' by itself, so without destroying it on close ssh2
 * would keep the session of a peer that died (SIGKILL, reboot).
 */
export function sshStream(ws: WebSocket): Duplex {
  keepFreedMemory();
  const stream = createWebSocketStream(ws);
  stream.on('error', () => ws.terminate());
  ws.once('close', () => stream.destroy());
  return stream;
}
