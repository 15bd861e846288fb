/** Where failed-login counts live: in memory, or in the server's store so bans survive a restart. */
export interface FailureRecords {
  get(address: string): { count: number; banned_until: number } | undefined;
  set(address: string, count: number, bannedUntil: number): void;
  clear(address: string): void;
}

export function memoryRecords(): FailureRecords {
  const m = new Map<string, { count: number; banned_until: number }>();
  return {
    get: (a) => m.get(a),
    set: (a, count, banned_until) => void m.set(a, { count, banned_until }),
    clear: (a) => void m.delete(a),
  };
}

/** Counts failed logins per source address and bans an address after max_failed_login of them. */
export class LoginThrottle {
  constructor(
    private readonly maxFailed: number,
    private readonly banMs: number,
    private readonly records: FailureRecords = memoryRecords(),
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds the address is still banned for; 0 when it may try. */
  bannedFor(address: string): number {
    const f = this.records.get(address);
    if (!f || f.banned_until === 0) return 0;
    const left = f.banned_until - this.now();
    if (left > 0) return left;
    this.records.clear(address);
    return 0;
  }

  /** Records a failure; true when it got the address banned. */
  failed(address: string): boolean {
    if (this.maxFailed <= 0) return false;
    const count = (this.records.get(address)?.count ?? 0) + 1;
    const banned = count >= this.maxFailed;
    this.records.set(address, count, banned ? this.now() + this.banMs : 0);
    return banned;
  }

  succeeded(address: string): void {
    if (this.records.get(address)) this.records.clear(address);
  }
}
