/**
 * A client connection the server turns away on purpose: the message is the one line both ends log, the
 * reason labels rport_handshake_failures_total. Anything else thrown while accepting is a fault.
 */
export class Refusal extends Error {
  constructor(
    readonly reason: 'refused' | 'identity' | 'duplicate' | 'unavailable',
    message: string,
  ) {
    super(message);
  }
}
