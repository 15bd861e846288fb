import { errorMessage, type Logger } from '../log.js';
import type { FailureRecord, FailureRecords } from './login-throttle.js';
import type { FailedLoginRecords } from './store/failed-logins.js';

/**
 * Login failure counts in memory, written through to the store so that bans survive a restart: the throttle
 * answers at once whatever the database does (a login is never held up by it), and a write that fails is
 * logged once until one succeeds again. Each node of a cluster counts the logins it sees.
 */
export async function storedFailures(
  store: FailedLoginRecords,
  log: Logger,
): Promise<FailureRecords & { purge(now: number, before: number): Promise<void> }> {
  const m = await store.failedLogins();
  let failing = false;
  const write = (p: Promise<void>) =>
    p.then(
      () => void (failing = false),
      (err) => {
        if (!failing) log.warn(`login failure counts not saved: ${errorMessage(err)}; they are kept in memory`);
        failing = true;
      },
    );
  return {
    get: (k) => m.get(k),
    set: (k: string, r: FailureRecord) => {
      m.set(k, r);
      void write(store.setFailedLogin(k, r));
    },
    clear: (k) => {
      m.delete(k);
      void write(store.clearFailedLogin(k));
    },
    /** Counts with no ban left and no failure since `before`: a flood from many sources must not grow them forever. */
    purge: async (now, before) => {
      for (const [k, r] of m) if (r.banned_until < now && r.last_failed_at < before) m.delete(k);
      await store.purgeFailedLogins(now, before);
    },
  };
}
