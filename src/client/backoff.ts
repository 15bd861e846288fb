/**
 * Exponential backoff from about 1 s, doubling, never above max_retry_interval. The jitter only shortens
 * a wait (by up to 20%), so the cap holds exactly while a fleet that lost its server still spreads out.
 */
export class Backoff {
  private attempt = 0;

  constructor(
    private readonly maxMs: number,
    private readonly random: () => number = Math.random,
    private readonly firstMs = 1000,
  ) {}

  next(): number {
    const base = Math.min(this.maxMs, this.firstMs * 2 ** Math.min(this.attempt, 30));
    this.attempt++;
    return Math.round(base * (1 - 0.2 * this.random()));
  }

  reset(): void {
    this.attempt = 0;
  }
}
