/**
 * A transaction that first takes transaction-scoped advisory locks, for the writers that serialize
 * on something other than the revision row (ops rows, audit sources): BEGIN and the locks in one
 * round trip, in key order (no deadlock between two writers of overlapping sets), the whole
 * transaction run again on a deadlock or serialization failure, a connection found broken not put
 * back in the pool.
 */
import type pg from 'pg';
import { isConnectionError, isRetryable, storeError } from './errors';

/** Attempts of one transaction before its retryable error is the caller's. */
const MAX_ATTEMPTS = 5;

export async function lockedTransaction<R>(
  pool: pg.Pool,
  lock: {
    /** The lock space (keys.ts LockSpace). */
    space: number;
    /** Lock keys within it (lockKey); duplicates and order do not matter. */
    keys: number[];
    /** For errors: "storing audit records". */
    doing: string;
    /** Errors of `body` that also mean "run it again" (besides deadlock and serialization). */
    retryAlso?: (err: unknown) => boolean;
  },
  body: (c: pg.PoolClient) => Promise<R>,
): Promise<R> {
  const keys = [...new Set(lock.keys)].sort((a, b) => a - b);
  for (let attempt = 1; ; attempt++) {
    let client: pg.PoolClient;
    try {
      client = await pool.connect();
    } catch (err) {
      throw storeError(err, lock.doing);
    }
    let broken: unknown;
    try {
      // Integers we computed: safe to inline.
      await client.query(
        `BEGIN; SELECT pg_advisory_xact_lock(${lock.space}, k) FROM unnest(ARRAY[${keys.join(',')}]::int4[]) AS k`,
      );
      const result = await body(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isConnectionError(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      if ((isRetryable(err) || lock.retryAlso?.(err) === true) && attempt < MAX_ATTEMPTS) continue;
      throw storeError(err, lock.doing);
    } finally {
      client.release(broken !== undefined);
    }
  }
}
