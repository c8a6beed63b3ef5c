/**
 * The audit trail on PostgreSQL (act_audit, see migrations.ts), for several replicas at volume.
 *
 * - The protobuf record (`record`, bytea) is the truth and round-trips exactly: its SHA-256 chain
 *   hash is re-verified from it. The filter columns (agent_id, token_id, action, decision,
 *   reason_code, t) and context/details (jsonb) are for indexes and ad-hoc SQL; text PostgreSQL
 *   cannot hold (NUL, lone surrogates) is replaced there and long values are shortened, and every
 *   result is re-checked against the decoded record, so a lossy column never changes an answer.
 * - Partitioned by month of the time in the audit id (audit-partitions.ts); the primary key
 *   (audit_id, t) is unique per id because t is a function of the id.
 * - Batches go in by binary COPY (audit-copy.ts), idempotent on audit_id. A batch is first tried as
 *   if none of it were stored (the usual case): the COPY fails on the primary key if one is, and the
 *   transaction then runs again, reading which of the batch's ids are stored (under the batch's
 *   source locks) and skipping those.
 * - `ingest` locks the batch's sources (advisory locks, in one order), reads their heads and the
 *   stored hashes of the batch's ids in the transaction, and writes what `planIngest` decides; two
 *   replicas ingesting for one source serialize. Appends take the same locks.
 * - Every storing transaction ends by bumping the one act_audit_state row (count, feed sequence)
 *   and adding its feed entry, so feed entries commit in sequence order with no gaps and onAppend
 *   on every replica sees each stored record once (change-feed.ts).
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { encodeMessage } from '../../common/proto-encode';
import { AuditRecord as AuditRecordCodec } from '../../gen/act/v1/admin';
import {
  auditIdAt,
  auditKeyProblem,
  canonicalAuditTime,
  checkAuditKeys,
  decodeCursor,
  encodeCursor,
  matchesFilter,
} from '../audit-common';
import { planIngest, type ChainHead, type IngestPlan } from '../chain-ingest';
import {
  ChainViolation,
  type AuditFilter,
  type AuditPage,
  type AuditRecord,
  type AuditStore,
  type IngestResult,
} from '../types';
import { AUDIT_COPY_COLUMNS, encodeAuditCopy, type AuditCopyRow } from './audit-copy';
import { AuditPartitions } from './audit-partitions';
import { OrderedFeed } from './change-feed';
import { isConnectionError, storeError } from './errors';
import { lockedTransaction } from './locked-tx';
import { LockSpace, lockKey } from './keys';

/** Records examined (not returned) at most per `query` call before it returns a cursor. */
export const DEFAULT_AUDIT_SCAN_BUDGET = 50_000;
/** Records read per statement during `export` (keyset pages: no transaction stays open). */
const EXPORT_CHUNK = 1000;
/** Records deleted per statement by prune(). */
const PRUNE_CHUNK = 5000;
/** Feed entries kept for replicas that fall behind (one per storing transaction). */
const FEED_KEEP = 10_000;
const FEED_PAGE = 100;
/** Longest value kept in a filter column (results are re-checked against the record). */
const MAX_COLUMN_CHARS = 512;

const BAD_TEXT = /[\0\ud800-\udfff]/;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;
/** JSON text holding an escape jsonb rejects: \u0000, or a (possibly lone) surrogate. */
const BAD_JSON_ESCAPE = /\\u0000|\\ud[89a-f]/i;

/** Options of the PostgreSQL audit store. */
export interface PostgresAuditOptions {
  /** Records examined at most per query call. Default {@link DEFAULT_AUDIT_SCAN_BUDGET}. */
  scanBudget?: number | undefined;
  onError: (err: Error) => void;
}

/** One record made ready for the COPY. */
interface Prepared {
  r: AuditRecord;
  ms: number | null;
  row: AuditCopyRow;
}

/**
 * Partition times past this (year 4000) count as "no time" (−infinity, the default partition): up
 * to here ms × 1000 is exact in a double, so SQL's act_audit_t(ms) and COPY's µs value agree.
 */
const MAX_PARTITION_MS = Date.UTC(4000, 0, 1);

/** The partition time of an audit id (Unix ms), or null. */
function partitionMs(id: string): number | null {
  const ms = canonicalAuditTime(id);
  return ms === undefined || ms > MAX_PARTITION_MS ? null : ms;
}

export class PostgresAuditStore implements AuditStore {
  readonly channel = 'act_audit';
  readonly feed: OrderedFeed<AuditRecord[]>;
  private readonly partitions: AuditPartitions;
  private readonly listeners = new Set<(records: AuditRecord[]) => void>();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly scanBudget: number;

  constructor(
    private readonly pool: pg.Pool,
    startSeq: number,
    opts: PostgresAuditOptions,
  ) {
    this.scanBudget = opts.scanBudget ?? DEFAULT_AUDIT_SCAN_BUDGET;
    this.partitions = new AuditPartitions(pool);
    this.feed = new OrderedFeed<AuditRecord[]>({
      start: startSeq,
      pageSize: FEED_PAGE,
      fetch: (after) => this.fetchFeed(after),
      deliver: (_seq, records) => this.notify(records),
      onError: opts.onError,
    });
  }

  async init(): Promise<void> {
    await this.partitions.load();
  }

  append(records: AuditRecord[]): Promise<number> {
    return this.track(this.doAppend(records));
  }

  ingest(records: AuditRecord[]): Promise<IngestResult> {
    return this.track(this.doIngest(records));
  }

  private async doAppend(records: AuditRecord[]): Promise<number> {
    for (const r of records) checkAuditKeys(r);
    // The first of each audit id in the batch, as LMDB keeps it.
    const seen = new Set<string>();
    const batch: Prepared[] = [];
    for (const r of records) {
      if (seen.has(r.audit_id)) continue;
      seen.add(r.audit_id);
      batch.push(prepare(r));
    }
    if (batch.length === 0) return 0;
    await this.ensurePartitions(batch.map((p) => p.ms));
    // First try: none of the batch is stored (the usual case); the COPY proves it or fails on the
    // primary key, and the retry reads which ids are stored.
    let lookUp = false;
    const { fresh, seq } = await this.transaction(sourcesOf(records), async (client) => {
      const stored = lookUp ? await storedRecords(client, batch) : new Map<string, Buffer>();
      const fresh = batch.filter((p) => !stored.has(p.r.audit_id));
      if (fresh.length === 0) return { fresh: [], seq: 0 };
      lookUp = true; // if this COPY fails, the next try looks
      await copyRecords(client, fresh);
      // The batch's highest record per source moves the head if it comes after it.
      const tops = new Map<string, Prepared>();
      for (const p of fresh) {
        const source = p.r.source ?? '';
        const top = tops.get(source);
        if (!top || isAfter(p.r, top.r)) tops.set(source, p);
      }
      const heads = [...tops].map(([source, p]) => headRow(source, p));
      const seq = await finishStore(client, heads, true, fresh, this.channel);
      return { fresh: fresh.map((p) => p.r), seq };
    });
    if (seq > 0) await this.feed.offer(seq, fresh);
    return fresh.length;
  }

  private async doIngest(records: AuditRecord[]): Promise<IngestResult> {
    if (records.length === 0) return { stored: 0, duplicates: 0, gaps: 0, restarts: 0 };
    const ids: string[] = [];
    for (const r of records) if (typeof r.audit_id === 'string') ids.push(r.audit_id);
    const ms = ids.map(partitionMs);
    // Before the transaction: creating a partition waits for transactions that read act_audit.
    await this.ensurePartitions(ms);
    // First try: none of the batch is stored (a fresh batch that continues its chain, the usual
    // case). If that plan is refused, or the COPY finds an id stored, the retry reads the stored
    // hashes and decides again: the answer is the same as if it had read them at once.
    let lookUp = false;
    const { plan, seq } = await this.transaction(sourcesOf(records), async (client) => {
      const sources = [...new Set(records.map((r) => cleanText(String(r.source ?? ''))))];
      const { heads: headBySource, stored } = await headsAndStored(
        client,
        sources,
        lookUp ? ids.map((id, i) => ({ id, ms: ms[i]! })) : [],
      );
      const storedHash = new Map<string, string>();
      for (const [id, bytes] of stored) storedHash.set(id, AuditRecordCodec.decode(bytes).hash);
      // Throws ChainViolation (the transaction rolls back, nothing is stored). The record's bytes
      // without its hash are made once: hashed here, and stored with the hash field appended.
      const hashless = new Map<AuditRecord, Buffer>();
      let plan: IngestPlan;
      try {
        plan = planIngest(
          records,
          (source) => headBySource.get(source),
          (id) => storedHash.get(id),
          (r) => {
            const bytes = encodeMessage(AuditRecordCodec, { ...r, hash: '' });
            hashless.set(r, bytes);
            return createHash('sha256').update(bytes).digest('hex');
          },
        );
      } catch (err) {
        if (lookUp || !(err instanceof ChainViolation)) throw err;
        lookUp = true; // refused without knowing what is stored: decide again knowing it
        throw new RacedInsert();
      }
      if (plan.insert.length === 0) return { plan, seq: 0 };
      const batch = plan.insert.map((r) => prepare(r, withHashField(hashless.get(r)!, r.hash)));
      lookUp = true; // if this COPY fails, the next try looks
      await copyRecords(client, batch);
      const byId = new Map(batch.map((p) => [p.r.audit_id, p]));
      const heads = [...plan.heads].map(([source, h]) => headRow(source, byId.get(h.audit_id)!));
      const seq = await finishStore(client, heads, false, batch, this.channel);
      return { plan, seq };
    });
    if (seq > 0) await this.feed.offer(seq, plan.insert);
    return plan.result;
  }

  async prune(beforeMs: number): Promise<number> {
    const bound = auditIdAt(beforeMs);
    let total = 0;
    // Whole months before the bound: drop their partitions (every id in them sorts before the bound).
    for (const p of await this.partitions.list()) {
      if (p.endMs > beforeMs) continue;
      total += await this.dropPartition(p.name);
      this.partitions.forget(p.month);
    }
    // The rest (the bound's month, the default partition): delete by id, in chunks.
    for (;;) {
      const { rows } = await this.exec<{ n: string }>(
        'pruning audit records',
        `WITH victims AS (SELECT audit_id, t FROM act_audit WHERE audit_id < $1 LIMIT ${PRUNE_CHUNK}),
              gone AS (DELETE FROM act_audit a USING victims v WHERE a.audit_id = v.audit_id AND a.t = v.t
                       RETURNING 1),
              n AS (SELECT count(*) AS n FROM gone),
              counted AS (UPDATE act_audit_state SET count = count - n.n FROM n WHERE id = 1 AND n.n > 0)
         SELECT n FROM n`,
        [bound],
      );
      const n = Number(rows[0]!.n);
      total += n;
      if (n < PRUNE_CHUNK) return total;
    }
  }

  private async dropPartition(name: string): Promise<number> {
    const client = await this.connect('pruning audit records');
    let broken: unknown;
    try {
      await client.query('BEGIN');
      // Waits for inserts into it to commit; then nothing can add to it until it is gone.
      await client.query(`LOCK TABLE ${name} IN ACCESS EXCLUSIVE MODE`);
      const { rows } = await client.query<{ n: string }>(`SELECT count(*) AS n FROM ${name}`);
      const n = Number(rows[0]!.n);
      await client.query(`DROP TABLE ${name}`);
      await client.query('UPDATE act_audit_state SET count = count - $1 WHERE id = 1', [n]);
      await client.query('COMMIT');
      return n;
    } catch (err) {
      if (isConnectionError(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      if ((err as { code?: string }).code === '42P01') return 0; // another replica dropped it first
      throw storeError(err, 'pruning audit records');
    } finally {
      client.release(broken !== undefined);
    }
  }

  async query(filter: AuditFilter, cursor: string, limit: number): Promise<AuditPage> {
    const max = Math.max(1, Math.floor(limit) || 1);
    let high = cursor === '' ? undefined : decodeCursor(cursor);
    const records: AuditRecord[] = [];
    let examined = 0;
    let lastId = '';
    // Newest first, in growing chunks of candidates (rows that pass the driving filter and the
    // bounds): at most `scanBudget` are examined per call, as on LMDB, and a page whose filters all
    // have an index column costs about one chunk of `limit` rows.
    return this.orderedScan('querying audit records', async (client) => {
      for (let chunk = max + 1; ; chunk *= 4) {
        const sql = new FilterSql(filter);
        if (high !== undefined) sql.bound('audit_id <', high);
        const want = Math.min(chunk, this.scanBudget - examined + 1);
        const { rows } = await client.query<{ audit_id: string; record: Buffer | null }>(
          `SELECT audit_id, CASE WHEN ${sql.residual()} THEN record END AS record FROM act_audit
           WHERE ${sql.where()} ORDER BY audit_id DESC LIMIT ${want}`,
          sql.params,
        );
        for (const row of rows) {
          // There is another candidate: stop here if the page is full or the budget spent.
          if (records.length >= max || examined >= this.scanBudget) {
            return { records, nextCursor: encodeCursor(lastId) };
          }
          examined++;
          lastId = row.audit_id;
          if (row.record) {
            const rec = AuditRecordCodec.decode(row.record);
            if (matchesFilter(rec, filter)) records.push(rec);
          }
        }
        if (rows.length < want) return { records, nextCursor: '' };
        high = lastId;
      }
    });
  }

  async *export(filter: AuditFilter): AsyncGenerator<AuditRecord> {
    let after: string | undefined;
    for (;;) {
      const sql = new FilterSql(filter);
      if (after !== undefined) sql.bound('audit_id >', after);
      // One short transaction per chunk: nothing stays open while the consumer is slow.
      const rows = await this.orderedScan('exporting audit records', async (client) => {
        const where = [sql.where(), sql.residual()].join(' AND ');
        const res = await client.query<{ audit_id: string; record: Buffer }>(
          `SELECT audit_id, record FROM act_audit WHERE ${where} ORDER BY audit_id ASC LIMIT ${EXPORT_CHUNK}`,
          sql.params,
        );
        return res.rows;
      });
      for (const row of rows) {
        const rec = AuditRecordCodec.decode(row.record);
        if (matchesFilter(rec, filter)) yield rec;
      }
      if (rows.length < EXPORT_CHUNK) return;
      after = rows[rows.length - 1]!.audit_id;
    }
  }

  /**
   * Runs keyset scans (ORDER BY audit_id … LIMIT n) in one read-only snapshot with bitmap scans and
   * sorts off: the only plans left walk an index in id order and stop at the limit. With partition
   * statistics that lag a bulk load, the planner otherwise reads every row of the filter and sorts
   * them (measured: 157 ms instead of 1 ms for one page over 300k records).
   */
  private async orderedScan<R>(doing: string, fn: (client: pg.PoolClient) => Promise<R>): Promise<R> {
    const client = await this.connect(doing);
    let broken: unknown;
    try {
      await client.query(
        'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL enable_bitmapscan = off; SET LOCAL enable_sort = off',
      );
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isConnectionError(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw storeError(err, doing);
    } finally {
      client.release(broken !== undefined);
    }
  }

  onAppend(listener: (records: AuditRecord[]) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async lastOfSource(source: string): Promise<AuditRecord | undefined> {
    // A source that cannot be stored has no head (and would not fit in the query).
    if (typeof source !== 'string' || (source !== '' && auditKeyProblem(source))) return undefined;
    const { rows } = await this.exec<{ record: Buffer }>(
      'reading audit records',
      `SELECT a.record FROM act_audit_heads h JOIN act_audit a ON a.audit_id = h.audit_id AND a.t = h.t
       WHERE h.source = $1`,
      [source],
    );
    return rows[0] ? AuditRecordCodec.decode(rows[0].record) : undefined;
  }

  async count(): Promise<number> {
    const { rows } = await this.exec<{ count: string }>(
      'counting audit records',
      'SELECT count FROM act_audit_state WHERE id = 1',
    );
    return Number(rows[0]!.count);
  }

  /** Resolves when appends started so far have settled (close). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  async closeFeed(): Promise<void> {
    await this.feed.close();
    this.listeners.clear();
  }

  private notify(records: AuditRecord[]): void {
    if (records.length === 0) return;
    for (const l of [...this.listeners]) {
      try {
        l(records);
      } catch {
        // A faulty follower must not fail an append that is already stored.
      }
    }
  }

  private async fetchFeed(after: number): Promise<{ seq: number; entry: AuditRecord[] }[]> {
    // Nobody follows on this replica: move on without reading the records (a subscriber only gets
    // records stored after it subscribed; one that came while we read is served by reading again).
    if (this.listeners.size === 0) {
      const { rows } = await this.pool.query<{ seq: string }>(
        `SELECT seq FROM act_audit_feed WHERE seq > $1 ORDER BY seq LIMIT ${FEED_PAGE}`,
        [after],
      );
      if (this.listeners.size === 0) return rows.map((r) => ({ seq: Number(r.seq), entry: [] }));
    }
    const { rows } = await this.pool.query<{ seq: string; audit_ids: string[]; ms: (string | null)[] }>(
      `SELECT seq, audit_ids, ms FROM act_audit_feed WHERE seq > $1 ORDER BY seq LIMIT ${FEED_PAGE}`,
      [after],
    );
    if (rows.length === 0) return [];
    const ids = rows.flatMap((r) => r.audit_ids);
    const ms = rows.flatMap((r) => r.ms.map((m) => (m === null ? null : Number(m))));
    const records = await recordsByIds(this.pool, ids, ms);
    // A record pruned since it was stored is simply not there any more.
    return rows.map((r) => ({
      seq: Number(r.seq),
      entry: r.audit_ids.flatMap((id) => {
        const bytes = records.get(id);
        return bytes ? [AuditRecordCodec.decode(bytes)] : [];
      }),
    }));
  }

  /** Must not run inside a transaction that touched act_audit (the DDL would wait for it). */
  private async ensurePartitions(times: (number | null)[]): Promise<void> {
    try {
      await this.partitions.ensure(times.filter((ms): ms is number => ms !== null));
    } catch (err) {
      throw storeError(err, 'creating an audit partition');
    }
  }

  /** Runs `body` holding the advisory locks of `sources`; retried on deadlock or a raced insert. */
  private transaction<R>(sources: string[], body: (c: pg.PoolClient) => Promise<R>): Promise<R> {
    return lockedTransaction(
      this.pool,
      {
        space: LockSpace.auditSource,
        keys: sources.map(lockKey),
        doing: 'storing audit records',
        retryAlso: (err) => err instanceof RacedInsert,
      },
      body,
    );
  }

  private async exec<T extends pg.QueryResultRow>(doing: string, text: string, values: unknown[] = []) {
    try {
      return await this.pool.query<T>(text, values);
    } catch (err) {
      throw storeError(err, doing);
    }
  }

  private async connect(doing: string): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw storeError(err, doing);
    }
  }

  private track<R>(p: Promise<R>): Promise<R> {
    this.inFlight.add(p);
    // Tracked only so close() can wait; the caller observes the result through `p`.
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
    return p;
  }
}

/** Run the storing transaction again (an id of the batch turned out to be stored). */
class RacedInsert extends Error {
  constructor() {
    super('an audit id of the batch was stored concurrently');
  }
}

function sourcesOf(records: AuditRecord[]): string[] {
  return records.map((r) => String(r.source ?? ''));
}

/** Whether `a` comes after `b` in a source's chain: higher seq, or the same seq and a later id. */
function isAfter(a: AuditRecord, b: AuditRecord): boolean {
  return (
    a.seq > b.seq || (a.seq === b.seq && Buffer.compare(Buffer.from(a.audit_id), Buffer.from(b.audit_id)) > 0)
  );
}

/**
 * A record's encoding from its encoding without the hash: the hash field (17, a 64-character
 * string) appended. Protobuf fields may come in any order; decoding gives the same record (the
 * same trick as AuditChain.sealEncoded).
 */
function withHashField(hashless: Buffer, hash: string): Buffer {
  const out = Buffer.allocUnsafe(hashless.length + 3 + 64);
  hashless.copy(out, 0);
  out[hashless.length] = 0x8a;
  out[hashless.length + 1] = 0x01;
  out[hashless.length + 2] = 64;
  out.write(hash, hashless.length + 3, 'latin1');
  return out;
}

function prepare(r: AuditRecord, encoded?: Buffer): Prepared {
  const ms = partitionMs(r.audit_id);
  return {
    r,
    ms,
    row: {
      audit_id: r.audit_id,
      ms,
      agent_id: column(r.agent_id),
      token_id: column(r.token_id),
      action: column(r.action),
      decision: int32(r.decision),
      reason_code: int32(r.reason_code),
      source: column(r.source),
      seq: Number.isSafeInteger(r.seq) ? r.seq : 0,
      context: r.context === undefined || r.context === null ? null : jsonbText(r.context),
      details: r.details === undefined || r.details === null ? null : jsonbText(r.details),
      record: encoded ?? encodeMessage(AuditRecordCodec, r),
    },
  };
}

/** The stored records (protobuf bytes) among `batch`'s ids. */
async function storedRecords(
  client: pg.PoolClient,
  batch: readonly ({ id: string; ms: number | null } | Prepared)[],
): Promise<Map<string, Buffer>> {
  const ids = batch.map((b) => cleanText('r' in b ? b.r.audit_id : b.id));
  return recordsByIds(
    client,
    ids,
    batch.map((b) => b.ms),
  );
}

/**
 * Records by id: one index probe per id (`= ANY`), in the partitions the ids' times span. (A join
 * with unnest(ids) let the planner hash the whole table.)
 */
async function recordsByIds(
  db: pg.PoolClient | pg.Pool,
  ids: string[],
  ms: (number | null)[],
): Promise<Map<string, Buffer>> {
  if (ids.length === 0) return new Map();
  const [lo, hi] = timeSpan(ms);
  const { rows } = await db.query<{ audit_id: string; record: Buffer }>(
    `SELECT audit_id, record FROM act_audit
     WHERE audit_id = ANY($1::text[]) AND t >= act_audit_t($2) AND t <= act_audit_t($3)`,
    [ids, lo, hi],
  );
  return new Map(rows.map((r) => [r.audit_id, r.record]));
}

/** The heads of `sources` and the stored records among `batch`'s ids, in one statement. */
async function headsAndStored(
  client: pg.PoolClient,
  sources: string[],
  batch: readonly { id: string; ms: number | null }[],
): Promise<{ heads: Map<string, ChainHead>; stored: Map<string, Buffer> }> {
  const [lo, hi] = timeSpan(batch.map((b) => b.ms));
  const { rows } = await client.query<{
    source: string | null;
    audit_id: string;
    seq: string | null;
    hash: string | null;
    record: Buffer | null;
  }>(
    `SELECT source, audit_id, seq, hash, NULL::bytea AS record FROM act_audit_heads WHERE source = ANY($1)
     UNION ALL
     SELECT NULL, audit_id, NULL, NULL, record FROM act_audit
     WHERE audit_id = ANY($2::text[]) AND t >= act_audit_t($3) AND t <= act_audit_t($4)`,
    [sources, batch.map((b) => cleanText(b.id)), lo, hi],
  );
  const heads = new Map<string, ChainHead>();
  const stored = new Map<string, Buffer>();
  for (const r of rows) {
    if (r.record) stored.set(r.audit_id, r.record);
    else heads.set(r.source!, { audit_id: r.audit_id, seq: Number(r.seq), hash: r.hash! });
  }
  return { heads, stored };
}

/** The partition-time span of a set of ids, for pruning: [lowest, highest] (null = −infinity). */
function timeSpan(ms: (number | null)[]): [number | null, number | null] {
  let lo: number | null = Infinity;
  let hi = -Infinity;
  for (const m of ms) {
    if (m === null) lo = null;
    else {
      if (lo !== null && m < lo) lo = m;
      if (m > hi) hi = m;
    }
  }
  // Only timeless ids: −infinity alone.
  return [lo === Infinity ? null : lo, hi === -Infinity ? null : hi];
}

/** COPYs new records in; an id stored meanwhile (primary key violation) means: run the transaction again. */
async function copyRecords(client: pg.PoolClient, batch: readonly Prepared[]): Promise<void> {
  const data = encodeAuditCopy(batch.map((p) => p.row));
  try {
    await pipeline(
      Readable.from([data]),
      client.query(copyFrom(`COPY act_audit (${AUDIT_COPY_COLUMNS}) FROM STDIN (FORMAT binary)`)),
    );
  } catch (err) {
    if ((err as { code?: string }).code === '23505') throw new RacedInsert();
    throw err;
  }
}

interface HeadRow {
  source: string;
  audit_id: string;
  ms: number | null;
  seq: number;
  hash: string;
}

function headRow(source: string, p: Prepared): HeadRow {
  return {
    source,
    audit_id: p.r.audit_id,
    ms: p.ms,
    seq: Number.isSafeInteger(p.r.seq) ? p.r.seq : 0,
    hash: cleanText(String(p.r.hash ?? '')),
  };
}

/**
 * The end of a storing transaction, in one statement: the chain heads (`onlyForward`: only where the
 * new head comes after the stored one, for append), then the count and the feed entry. The state
 * row's lock is taken here, last, and held only to the commit. Returns the feed sequence number.
 */
async function finishStore(
  client: pg.PoolClient,
  heads: HeadRow[],
  onlyForward: boolean,
  stored: Prepared[],
  channel: string,
): Promise<number> {
  const forward = onlyForward
    ? `WHERE EXCLUDED.seq > act_audit_heads.seq
         OR (EXCLUDED.seq = act_audit_heads.seq AND EXCLUDED.audit_id > act_audit_heads.audit_id)`
    : '';
  const { rows } = await client.query<{ seq: string }>(
    `WITH h AS (
       INSERT INTO act_audit_heads (source, audit_id, t, seq, hash)
       SELECT u.source, u.id, act_audit_t(u.ms), u.seq, u.hash
       FROM unnest($1::text[], $2::text[], $3::int8[], $4::int8[], $5::text[]) AS u(source, id, ms, seq, hash)
       ON CONFLICT (source) DO UPDATE
         SET audit_id = EXCLUDED.audit_id, t = EXCLUDED.t, seq = EXCLUDED.seq, hash = EXCLUDED.hash
       ${forward}
     ),
     st AS (UPDATE act_audit_state SET seq = seq + 1, count = count + $6 WHERE id = 1 RETURNING seq),
     fd AS (INSERT INTO act_audit_feed (seq, audit_ids, ms) SELECT seq, $7::text[], $8::int8[] FROM st),
     tr AS (DELETE FROM act_audit_feed WHERE seq = (SELECT seq FROM st) - ${FEED_KEEP})
     SELECT seq, pg_notify('${channel}', seq::text) FROM st`,
    [
      heads.map((h) => h.source),
      heads.map((h) => h.audit_id),
      heads.map((h) => h.ms),
      heads.map((h) => h.seq),
      heads.map((h) => h.hash),
      stored.length,
      stored.map((p) => p.r.audit_id),
      stored.map((p) => p.ms),
    ],
  );
  return Number(rows[0]!.seq);
}

/**
 * SQL for a filter: the driving predicate and bounds (`where`, what the query's budget counts) and
 * the other filters (`residual`). Values go through the same lossy mapping as the columns.
 */
class FilterSql {
  readonly params: unknown[] = [];
  private readonly conds: string[] = [];
  private readonly rest: string[] = [];

  constructor(f: AuditFilter) {
    const eq: [string, unknown][] = [];
    if (f.agent_id !== undefined) eq.push(['agent_id', column(f.agent_id)]);
    if (f.token_id !== undefined) eq.push(['token_id', column(f.token_id)]);
    if (f.action !== undefined) eq.push(['action', column(f.action)]);
    if (f.reason_code !== undefined) eq.push(['reason_code', int32(f.reason_code)]);
    if (f.decision !== undefined) eq.push(['decision', int32(f.decision)]);
    eq.forEach(([col, v], i) => (i === 0 ? this.conds : this.rest).push(`${col} = ${this.param(v)}`));
    // Time bounds as id bounds (no real id equals one) and as t bounds (partition pruning).
    if (f.sinceMs !== undefined) {
      this.bound('audit_id >=', auditIdAt(f.sinceMs));
      this.conds.push(`t >= act_audit_t(${this.param(Math.max(0, Math.floor(f.sinceMs)))})`);
    }
    if (f.untilMs !== undefined) {
      this.bound('audit_id <', auditIdAt(f.untilMs));
      this.conds.push(`t < act_audit_t(${this.param(Math.max(0, Math.floor(f.untilMs)))})`);
    }
  }

  bound(op: string, id: string): void {
    this.conds.push(`${op} ${this.param(cleanText(id))}`);
  }

  where(): string {
    return this.conds.length > 0 ? this.conds.join(' AND ') : 'true';
  }

  residual(): string {
    return this.rest.length > 0 ? this.rest.join(' AND ') : 'true';
  }

  private param(v: unknown): string {
    this.params.push(v);
    return `$${this.params.length}`;
  }
}

/** Text PostgreSQL can store: NUL and lone surrogates replaced by U+FFFD. */
function cleanText(s: string): string {
  if (!BAD_TEXT.test(s)) return s;
  return s.replace(/\0/g, '\ufffd').replace(LONE_SURROGATE, '\ufffd');
}

/** A filter column's value: clean and at most {@link MAX_COLUMN_CHARS} characters. */
function column(s: unknown): string {
  const str = typeof s === 'string' ? s : String(s ?? '');
  return cleanText(str.length > MAX_COLUMN_CHARS ? str.slice(0, MAX_COLUMN_CHARS) : str);
}

function int32(n: unknown): number {
  return typeof n === 'number' && Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 ? n : -1;
}

/** JSON text jsonb accepts: keys and strings cleaned when they hold what it rejects. */
function jsonbText(v: unknown): string {
  const text = JSON.stringify(v);
  if (!BAD_JSON_ESCAPE.test(text)) return text;
  return JSON.stringify(cleanJson(v));
}

function cleanJson(v: unknown): unknown {
  if (typeof v === 'string') return cleanText(v);
  if (Array.isArray(v)) return v.map(cleanJson);
  if (v !== null && typeof v === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[cleanText(k)] = cleanJson(x);
    return out;
  }
  return v;
}
