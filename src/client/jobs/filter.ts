import type { CommandsConfig } from '../../config/client-config.js';

export interface FilterDecision {
  allowed: boolean;
  /** Which rule decided, for the client's log and the refusal the server gets. */
  reason: string;
}

const firstMatch = (list: RegExp[], command: string) => list.find((r) => r.test(command));

/**
 * [remote-commands] allow, deny and order, with the evaluation rules of RPort's rport.example.conf:
 * allow,deny: some allow must match, then no deny may match (no match at all: denied);
 * deny,allow: a matching allow permits; else a matching deny refuses; no match at all: permitted.
 */
export function checkCommand(cfg: Pick<CommandsConfig, 'allow' | 'deny' | 'order'>, command: string): FilterDecision {
  const allow = firstMatch(cfg.allow, command);
  const deny = firstMatch(cfg.deny, command);
  if (cfg.order === 'allow-deny') {
    if (!allow) return { allowed: false, reason: 'it matches no [remote-commands] allow pattern (order allow,deny)' };
    if (deny) return { allowed: false, reason: `it matches the deny pattern ${deny.source} (order allow,deny)` };
    return { allowed: true, reason: `it matches the allow pattern ${allow.source} and no deny pattern` };
  }
  if (allow) return { allowed: true, reason: `it matches the allow pattern ${allow.source} (order deny,allow)` };
  if (deny)
    return {
      allowed: false,
      reason: `it matches the deny pattern ${deny.source} and no allow pattern (order deny,allow)`,
    };
  return { allowed: true, reason: 'it matches neither allow nor deny (order deny,allow permits it)' };
}
