/** Counts failed logins per source address and bans an address after max_failed_login of them. */
export class LoginThrottle {
  private readonly failures = new Map<string, { count: number; bannedUntil: number }>();

  constructor(
    private readonly maxFailed: number,
    private readonly banMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Milliseconds the address is still banned for; 0 when it may try. */
  bannedFor(address: string): number {
    const f = this.failures.get(address);
    if (!f || f.bannedUntil === 0) return 0;
    const left = f.bannedUntil - this.now();
    if (left > 0) return left;
    this.failures.delete(address);
    return 0;
  }

  /** Records a failure; true when it got the address banned. */
  failed(address: string): boolean {
    if (this.maxFailed <= 0) return false;
    const f = this.failures.get(address) ?? { count: 0, bannedUntil: 0 };
    f.count++;
    this.failures.set(address, f);
    if (f.count >= this.maxFailed) {
      f.bannedUntil = this.now() + this.banMs;
      return true;
    }
    return false;
  }

  succeeded(address: string): void {
    this.failures.delete(address);
  }
}
