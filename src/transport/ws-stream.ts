import type { Duplex } from 'node:stream';
import type ssh2 from 'ssh2';
import { createWebSocketStream, type WebSocket } from 'ws';
import { shrinkYoungGenerationWhenQuiet } from './gc.js';
import { keepFreedMemory } from './acceleration.js';

/**
 * Bytes the WebSocket may hold in this process before tunnels stop reading their sockets. ssh2 writes
 * every packet its channel windows allow (megabytes each) without looking at the stream's backpressure,
 * so without this limit a peer that stopped reading made the other end read every tunnel connection
 * into its heap, a whole window each, queued in arrival order. Waiting data belongs in the tunnel sockets' kernel
 * buffers, where TCP slows the senders, and the tunnels that wait take turns.
 */
export const TRANSPORT_HIGH_WATER = 256 << 10;

/**
 * The WebSocket as the byte stream ssh2 runs on, for both ends. The stream only ends its readable side
 * when the WebSocket closes and never emits 'close' by itself, so without destroying it on close ssh2
 * would keep the session of a peer that died (SIGKILL, reboot).
 */
export function sshStream(ws: WebSocket): Duplex {
  keepFreedMemory();
  shrinkYoungGenerationWhenQuiet();
  const stream = createWebSocketStream(ws, { writableHighWaterMark: TRANSPORT_HIGH_WATER });
  stream.on('error', () => ws.terminate());
  ws.once('close', () => stream.destroy());
  return stream;
}

const waiting = new WeakMap<Duplex, Set<() => void>>();

/** The stream an SSH channel's connection runs on (ssh2 keeps it as `_sock` on Client and server Connection alike). */
function transportOf(channel: ssh2.Channel): Duplex | undefined {
  return (channel as unknown as { _client?: { _sock?: Duplex } })._client?._sock;
}

/**
 * Whether the channel's connection holds more than TRANSPORT_HIGH_WATER; if so, `resume` runs once when
 * it has drained. Waiters are resumed in the order they came, so busy tunnels take turns.
 */
export function transportFull(channel: ssh2.Channel, resume: () => void): boolean {
  const stream = transportOf(channel);
  if (!stream?.writableNeedDrain) return false;
  let set = waiting.get(stream);
  if (!set) {
    const waiters = (set = new Set());
    waiting.set(stream, waiters);
    stream.on('drain', () => {
      const now = [...waiters];
      waiters.clear();
      for (const fn of now) fn();
    });
  }
  set.add(resume);
  return true;
}
