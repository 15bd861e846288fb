import type { Db } from '../db/db.js';
import type { FailureRecord } from '../login-throttle.js';

/** Login failure counts by opaque key (source and account), so that bans survive a restart. */
export class FailedLoginRecords {
  constructor(private readonly db: Db) {}

  async failedLogins(): Promise<Map<string, FailureRecord>> {
    const rows = await this.db.all<FailureRecord & { address: string }>(
      'SELECT address, count, banned_until, last_failed_at FROM failed_logins',
    );
    return new Map(rows.map(({ address, ...r }) => [address, r]));
  }

  async setFailedLogin(key: string, r: FailureRecord): Promise<void> {
    await this.db.run(
      `INSERT INTO failed_logins (address, count, banned_until, last_failed_at) VALUES (?, ?, ?, ?)
      ON CONFLICT (address) DO UPDATE SET count = excluded.count, banned_until = excluded.banned_until, last_failed_at = excluded.last_failed_at`,
      [key, r.count, r.banned_until, r.last_failed_at],
    );
  }

  async clearFailedLogin(key: string): Promise<void> {
    await this.db.run('DELETE FROM failed_logins WHERE address = ?', [key]);
  }

  /** Failure counts with no ban left and no failure since `before`: a flood from many sources must not grow the table forever. */
  async purgeFailedLogins(now: number, before: number): Promise<void> {
    await this.db.run('DELETE FROM failed_logins WHERE banned_until < ? AND last_failed_at < ?', [now, before]);
  }
}
