import type { ClientConfig } from '../config/client-config.js';
import { formatDuration } from '../shared/duration.js';

/**
 * What a timer may fire late by on a busy machine: the client adds it to every step's deadline, and the
 * heartbeat budget below counts it once per interval.
 */
export const TIMER_SLACK_MS = 1000;

/**
 * The longest time between two watchdog events the client can take when healthy, from its config. Every
 * step has a timeout, keep-alive jitter only shortens the interval, and backoff never exceeds
 * max_retry_interval, so these bounds hold.
 */
export interface HeartbeatBudget {
  /** Connected: from one successful ping (or the connect) to the next ping's answer or its timeout. */
  connectedMs: number;
  /** Reconnecting: the longest wait plus one whole attempt. */
  reconnectingMs: number;
  maxMs: number;
}

export function heartbeatBudget(
  c: Pick<ClientConfig, 'keepAliveMs' | 'keepAliveTimeoutMs' | 'maxRetryIntervalMs' | 'connectTimeoutMs'>,
): HeartbeatBudget {
  const connectedMs = c.keepAliveMs + c.keepAliveTimeoutMs + TIMER_SLACK_MS;
  const reconnectingMs = c.maxRetryIntervalMs + c.connectTimeoutMs + TIMER_SLACK_MS;
  return { connectedMs, reconnectingMs, maxMs: Math.max(connectedMs, reconnectingMs) };
}

export function describeBudget(b: HeartbeatBudget): string {
  return `${formatDuration(b.maxMs)} (connected: keep_alive + keep_alive_timeout + 1s = ${formatDuration(b.connectedMs)}; reconnecting: max_retry_interval + connect_timeout + 1s = ${formatDuration(b.reconnectingMs)})`;
}

/** A WatchdogSec (whole seconds) that covers the budget with a margin. */
export function suggestedWatchdogSec(b: HeartbeatBudget): number {
  return Math.ceil(b.maxMs / 1000) + 10;
}
