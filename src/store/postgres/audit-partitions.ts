/**
 * Monthly partitions of act_audit (`act_audit_yYYYYmMM`, UTC months of the time in the audit id).
 *
 * Partitions are made on demand for months inside a window around now (10 years back, 2 months
 * ahead), so a source sending odd times cannot create thousands of tables; other months, and ids
 * without a time, go to the default partition. A month whose rows already sit in the default
 * partition (it was outside the window then) keeps them there: PostgreSQL refuses a partition that
 * would strand rows of the default one, and that is fine, prune deletes them by id.
 */
import type pg from 'pg';
import { LockSpace } from './keys';

const WINDOW_PAST_MONTHS = 120;
const WINDOW_FUTURE_MONTHS = 2;
const NAME_RE = /^act_audit_y(\d{4})m(\d{2})$/;

/** Months as a number: year * 12 + (month - 1), UTC. */
export function monthOf(ms: number): number {
  const d = new Date(ms);
  return d.getUTCFullYear() * 12 + d.getUTCMonth();
}

export function monthStartMs(month: number): number {
  return Date.UTC(Math.floor(month / 12), month % 12, 1);
}

function partitionName(month: number): string {
  const y = Math.floor(month / 12);
  const m = (month % 12) + 1;
  return `act_audit_y${String(y).padStart(4, '0')}m${String(m).padStart(2, '0')}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace('Z', '+00');
}

export interface AuditPartition {
  name: string;
  month: number;
  /** Exclusive upper bound, Unix ms. */
  endMs: number;
}

export class AuditPartitions {
  /** Months known to have a partition, or to stay in the default partition. */
  private readonly settled = new Set<number>();

  constructor(
    private readonly pool: pg.Pool,
    private readonly now: () => number = Date.now,
  ) {}

  /** Loads the partitions that exist. */
  async load(): Promise<void> {
    for (const p of await this.list()) this.settled.add(p.month);
  }

  /** The monthly partitions that exist now, oldest first. */
  async list(): Promise<AuditPartition[]> {
    const { rows } = await this.pool.query<{ relname: string }>(
      `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
       WHERE i.inhparent = 'act_audit'::regclass`,
    );
    const out: AuditPartition[] = [];
    for (const { relname } of rows) {
      const m = NAME_RE.exec(relname);
      if (!m) continue; // the default partition
      const month = Number(m[1]) * 12 + Number(m[2]) - 1;
      out.push({ name: relname, month, endMs: monthStartMs(month + 1) });
    }
    return out.sort((a, b) => a.month - b.month);
  }

  /** Makes sure the months of `times` that belong in a partition have one (before inserting). */
  async ensure(times: Iterable<number>): Promise<void> {
    const nowMonth = monthOf(this.now());
    const want = new Set<number>();
    for (const ms of times) {
      const month = monthOf(ms);
      if (this.settled.has(month)) continue;
      if (month < nowMonth - WINDOW_PAST_MONTHS || month > nowMonth + WINDOW_FUTURE_MONTHS) continue;
      want.add(month);
    }
    for (const month of want) await this.create(month);
  }

  /** Forgets a dropped partition (prune). */
  forget(month: number): void {
    this.settled.delete(month);
  }

  private async create(month: number): Promise<void> {
    const client = await this.pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      // One creator at a time across replicas; IF NOT EXISTS covers the one that came second.
      await client.query('SELECT pg_advisory_xact_lock($1, 0)', [LockSpace.auditPartitions]);
      await client.query(
        `CREATE TABLE IF NOT EXISTS ${partitionName(month)} PARTITION OF act_audit
         FOR VALUES FROM ('${iso(monthStartMs(month))}') TO ('${iso(monthStartMs(month + 1))}')`,
      );
      await client.query('COMMIT');
    } catch (err) {
      await client.query('ROLLBACK').catch(() => (broken = true));
      const code = (err as { code?: string }).code;
      // 23514: the default partition holds rows of this month; 42P17: another partition overlaps it.
      if (code !== '23514' && code !== '42P17') throw err;
    } finally {
      client.release(broken);
    }
    this.settled.add(month);
  }
}
