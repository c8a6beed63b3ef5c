/**
 * The control-plane store on PostgreSQL, for several control-plane replicas on one database.
 * Same semantics as the LMDB driver (lmdb/lmdb-store.ts), across processes:
 *
 * - A write transaction first locks the one revision row (`SELECT … FOR UPDATE`), so write
 *   transactions are serialized across every replica, `fn` reads the latest committed state (plus its
 *   own buffered writes), and a changing commit takes revision + 1 while holding the lock: revisions
 *   commit in order with no gaps, and a reader that saw N can never later find an N−1 it skipped.
 * - The change log (act_changes) is the truth; NOTIFY is a wake-up. Each replica's feed delivers
 *   every revision, each once, in order, to its onCommit listeners; a write resolves only after this
 *   replica's listeners have seen it, and `revision()` is the last revision they have seen.
 *   `changesSince` answers up to the latest commit of any replica (catching the feed up first).
 * - `read` is a REPEATABLE READ, READ ONLY transaction: one snapshot across awaits.
 * - A lost database rejects calls with an UNAVAILABLE error; the pool reconnects when it is back.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { Change } from '../../gen/act/v1/sync';
import type {
  ChangeEntry,
  CommitEvent,
  Row,
  ScanOptions,
  Store,
  StoreReader,
  StoreWriter,
  TableName,
} from '../types';
import { Notifier, OrderedFeed } from './change-feed';
import { isConnectionError, storeError } from './errors';
import { encodeKey, MAX_KEY_BYTES } from './keys';
import { migrate, TABLES } from './migrations';
import { PostgresAuditStore } from './postgres-audit';
import { PostgresOpsStore } from './postgres-ops';
import { getRow, scanRows, serialized, type Queryable } from './scan';

/** Configuration of the PostgreSQL store. */
export interface PostgresStoreConfig {
  /** `postgres://user:password@host:port/database` (libpq-style URL; `?sslmode=…` as `pg` reads it). */
  databaseUrl: string;
  /** Revisions kept in the change log for sidecar catch-up. Default 100_000. */
  changeLogRetention?: number;
  /** Audit records examined at most per `audit.query` call. Default 50_000. */
  auditScanBudget?: number;
  /** Connections in this replica's pool (the LISTEN connection is extra). Default 10. */
  poolSize?: number;
  /** How long to wait for a connection before failing the call. Default 10_000 ms. */
  connectTimeoutMs?: number;
  /** Safety-net poll of the change log and audit feed, in ms. Default 1000. */
  pollMs?: number;
  /**
   * LISTEN for commit notifications (wake-ups within milliseconds). Default true. Set false behind
   * a pooler that cannot hold LISTEN (PgBouncer in transaction mode): replicas then hear of each
   * other's commits by the poll alone, within `pollMs`. A replica's own commits are seen at once either way.
   */
  listen?: boolean;
  /**
   * Faults that do not fail a call: an idle connection lost, the LISTEN connection lost and
   * retried, a feed that fell behind the retained log. Default: ignored. Never given secrets.
   */
  onError?: (err: Error) => void;
}

const DEFAULT_RETENTION = 100_000;
const DEFAULT_CHANGES_LIMIT = 10_000;
const FEED_PAGE = 1000;
const COMMIT_CHANNEL = 'act_commit';
/** How long close() lets in-flight writes reach this replica's listeners. */
const CLOSE_GRACE_MS = 5000;

const DELETED = Symbol('deleted');
const TABLE_SET = new Set<string>(TABLES);

/**
 * Opens the store on `config.databaseUrl`, applying pending migrations first (once, whichever
 * replica gets there first). The store id is made on the first open and kept in the database.
 */
export async function openPostgresStore(config: PostgresStoreConfig): Promise<Store> {
  const retention = config.changeLogRetention ?? DEFAULT_RETENTION;
  if (!Number.isInteger(retention) || retention < 1) {
    throw new Error(`changeLogRetention must be a positive integer, got ${retention}`);
  }
  const onError = config.onError ?? (() => undefined);
  const pool = new pg.Pool({
    connectionString: config.databaseUrl,
    max: config.poolSize ?? 10,
    connectionTimeoutMillis: config.connectTimeoutMs ?? 10_000,
    application_name: 'act-store',
    keepAlive: true,
  });
  // An idle connection dropped by the server (restart, failover) must not crash the process.
  pool.on('error', (err) => onError(new Error(`PostgreSQL store: idle connection lost: ${err.message}`)));
  // So must one dropped while checked out between two queries (the pool listens only while a
  // connection is idle; an 'error' with no listener ends the process). The query in flight, or the
  // next one, fails and its caller retries or answers UNAVAILABLE.
  pool.on('connect', (client) => {
    client.on('error', (err) => onError(new Error(`PostgreSQL store: connection lost: ${err.message}`)));
  });
  let notifier: Notifier | undefined;
  try {
    await migrate(pool).catch((err: unknown) => {
      throw storeError(err, 'migrating');
    });
    await pool.query("INSERT INTO act_meta (key, value) VALUES ('store_id', $1) ON CONFLICT DO NOTHING", [
      randomUUID(),
    ]);
    const { rows } = await pool.query<{ store_id: string; revision: string; audit_seq: string }>(
      `SELECT (SELECT value FROM act_meta WHERE key = 'store_id') AS store_id,
              (SELECT revision FROM act_revision WHERE id = 1) AS revision,
              (SELECT seq FROM act_audit_state WHERE id = 1) AS audit_seq`,
    );
    const head = rows[0]!;
    const store = new PostgresStore(pool, head.store_id, Number(head.revision), retention, onError);
    const audit = new PostgresAuditStore(pool, Number(head.audit_seq), {
      scanBudget: config.auditScanBudget,
      onError,
    });
    await audit.init();
    notifier = new Notifier({
      connectionString: config.databaseUrl,
      channels: new Map<string, (payload?: string) => void>([
        [COMMIT_CHANNEL, (p) => store.feed.notified(Number(p))],
        [audit.channel, (p) => audit.feed.notified(Number(p))],
      ]),
      pollMs: config.pollMs ?? 1000,
      listen: config.listen ?? true,
      onError,
    });
    await notifier.start();
    store.attach(audit, notifier);
    return store;
  } catch (err) {
    await notifier?.close();
    await pool.end().catch(() => undefined);
    throw storeError(err, 'opening');
  }
}

interface WriteOutcome<R> {
  result: R;
  revision: number;
  /** Resolves when this replica's listeners have seen `revision`. */
  seen: Promise<void>;
}

class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  readonly feed: OrderedFeed<Change[]>;
  readonly ops: PostgresOpsStore;
  audit!: PostgresAuditStore;
  private notifier!: Notifier;
  /** Serializes this replica's write transactions up to their commit (PostgreSQL serializes replicas). */
  private tail: Promise<unknown> = Promise.resolve();
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly listeners = new Set<(e: CommitEvent) => void>();
  private closed = false;

  constructor(
    private readonly pool: pg.Pool,
    readonly storeId: string,
    revision: number,
    private readonly retention: number,
    onError: (err: Error) => void,
  ) {
    this.ops = new PostgresOpsStore(pool);
    this.feed = new OrderedFeed<Change[]>({
      start: revision,
      pageSize: FEED_PAGE,
      fetch: async (after) => {
        const { rows } = await pool.query<{ revision: string; changes: Buffer[] }>(
          'SELECT revision, changes FROM act_changes WHERE revision > $1 ORDER BY revision LIMIT $2',
          [after, FEED_PAGE],
        );
        return rows.map((r) => ({ seq: Number(r.revision), entry: decodeChanges(r.changes) }));
      },
      deliver: (rev, changes) => {
        const event: CommitEvent = { revision: rev, changes };
        for (const l of [...this.listeners]) {
          try {
            l(event);
          } catch {
            // A faulty listener must not fail a committed write or starve the others.
          }
        }
      },
      onError,
    });
  }

  attach(audit: PostgresAuditStore, notifier: Notifier): void {
    this.audit = audit;
    this.notifier = notifier;
  }

  async revision(): Promise<number> {
    return this.feed.seen;
  }

  async read<R>(fn: (r: StoreReader) => Promise<R>): Promise<R> {
    this.assertOpen();
    const client = await this.begin('reading', 'BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY');
    let broken: unknown;
    try {
      const db = serialized(q(client));
      const reader: StoreReader = {
        get: async <T>(table: TableName, key: string) => getRow<T>(db, tableName(table), key),
        scan: async <T>(table: TableName, opts: ScanOptions) => scanRows<T>(db, tableName(table), opts),
        revision: async () => {
          const { rows } = await db.query<{ revision: string }>(
            'SELECT revision FROM act_revision WHERE id = 1',
          );
          return Number(rows[0]!.revision);
        },
      };
      let result: R;
      try {
        result = await fn(reader);
      } finally {
        // Reads fn started and did not await must finish before the transaction ends.
        await db.settled();
      }
      await client.query('COMMIT');
      return result;
    } catch (err) {
      if (isConnectionError(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw storeError(err, 'reading');
    } finally {
      client.release(broken !== undefined);
    }
  }

  write<R>(fn: (w: StoreWriter) => Promise<R>): Promise<{ result: R; revision: number }> {
    if (this.closed) return Promise.reject(new Error('store is closed'));
    const run = this.tail.then(() => this.runWrite(fn));
    // The chain survives a failed write; the caller sees the rejection through `run`. The next
    // writer starts once this one has committed; being seen by the listeners is awaited outside.
    this.tail = run.catch(() => undefined);
    const done = run.then(async (r) => {
      await r.seen;
      return { result: r.result, revision: r.revision };
    });
    this.track(done);
    return done;
  }

  private async runWrite<R>(fn: (w: StoreWriter) => Promise<R>): Promise<WriteOutcome<R>> {
    // A pooled connection the server dropped fails on BEGIN, before fn ran: one retry on a fresh one.
    for (let attempt = 0; ; attempt++) {
      const client = await this.connect('writing');
      let base: number;
      let oldest: number;
      try {
        // One round trip: BEGIN, then the revision row's lock, which serializes writers of every replica.
        const results = (await client.query(
          'BEGIN; SELECT revision, oldest FROM act_revision WHERE id = 1 FOR UPDATE',
        )) as unknown as pg.QueryResult<{ revision: string; oldest: string }>[];
        const row = results[1]!.rows[0]!;
        base = Number(row.revision);
        oldest = Number(row.oldest);
      } catch (err) {
        client.release(true);
        if (attempt === 0 && isConnectionError(err)) continue;
        throw storeError(err, 'writing');
      }
      return this.runLocked(client, base, oldest, fn);
    }
  }

  private async runLocked<R>(
    client: pg.PoolClient,
    base: number,
    oldest: number,
    fn: (w: StoreWriter) => Promise<R>,
  ): Promise<WriteOutcome<R>> {
    const tx = new WriteTx(client, base);
    let broken: unknown;
    try {
      let result: R;
      try {
        result = await fn(tx.writer);
      } finally {
        tx.finish(); // late put/emit calls from a leaked promise must not slip into a later commit
      }
      await tx.db.settled(); // reads fn started and did not await finish first
      if (!tx.wrote && tx.changes.length === 0) {
        await client.query('ROLLBACK');
        return { result, revision: base, seen: this.feed.waitFor(base) };
      }
      await tx.flushAll();
      const rev = base + 1;
      const trimTo = rev - this.retention; // log revisions <= trimTo fall out of retention
      await tx.db.query(
        `WITH log AS (INSERT INTO act_changes (revision, changes) VALUES ($1, $2)),
              trimmed AS (DELETE FROM act_changes WHERE revision >= $3 AND revision <= $4),
              bumped AS (UPDATE act_revision SET revision = $1, oldest = GREATEST(oldest, $4 + 1)
                         WHERE id = 1 RETURNING revision)
         SELECT pg_notify('${COMMIT_CHANNEL}', revision::text) FROM bumped`,
        [rev, tx.changes.map((c) => Buffer.from(Change.encode(c).finish())), oldest, trimTo],
      );
      await client.query('COMMIT');
      return { result, revision: rev, seen: this.feed.offer(rev, tx.changes) };
    } catch (err) {
      if (isConnectionError(err)) broken = err;
      else await client.query('ROLLBACK').catch((e: unknown) => (broken = e));
      throw storeError(err, 'writing');
    } finally {
      client.release(broken !== undefined);
    }
  }

  async changesSince(revision: number, limit = DEFAULT_CHANGES_LIMIT): Promise<ChangeEntry[] | 'too-old'> {
    this.assertOpen();
    // Everything committed so far, by any replica, is answered (a sidecar may come from a replica
    // that is ahead of this one): this replica's listeners hear of it first, then it is served.
    await this.feed.waitFor(await this.dbRevision());
    const upTo = this.feed.seen;
    // A revision from "the future" means another store's history: the sidecar must resync.
    if (revision > upTo) return 'too-old';
    // One statement, one snapshot: the retention bound and the entries agree.
    const { rows } = await this.query<{ oldest: string; revision: string | null; changes: Buffer[] | null }>(
      'reading the change log',
      `SELECT r.oldest, c.revision, c.changes FROM act_revision r
       LEFT JOIN LATERAL (SELECT revision, changes FROM act_changes
                          WHERE revision > $1 AND revision <= $2 ORDER BY revision LIMIT $3) c ON true
       WHERE r.id = 1 ORDER BY c.revision`,
      [revision, upTo, Number.isFinite(limit) ? Math.max(0, Math.floor(limit)) : DEFAULT_CHANGES_LIMIT],
    );
    if (revision < Number(rows[0]!.oldest) - 1) return 'too-old';
    const out: ChangeEntry[] = [];
    for (const r of rows) {
      if (r.revision !== null) out.push({ revision: Number(r.revision), changes: decodeChanges(r.changes!) });
    }
    return out;
  }

  onCommit(listener: (e: CommitEvent) => void): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.tail; // let queued writes commit
    // Let committed writes reach the listeners, unless the database is gone.
    await Promise.race([
      Promise.allSettled([...this.inFlight]),
      new Promise((r) => setTimeout(r, CLOSE_GRACE_MS).unref()),
    ]);
    await this.audit.drain();
    await this.ops.drain();
    await this.notifier.close();
    await this.feed.close();
    await this.audit.closeFeed();
    this.listeners.clear();
    await this.pool.end();
  }

  private async dbRevision(): Promise<number> {
    const { rows } = await this.query<{ revision: string }>(
      'reading the revision',
      'SELECT revision FROM act_revision WHERE id = 1',
    );
    return Number(rows[0]!.revision);
  }

  private async query<T extends pg.QueryResultRow>(
    doing: string,
    text: string,
    values: unknown[] = [],
  ): Promise<pg.QueryResult<T>> {
    try {
      return await this.pool.query<T>(text, values);
    } catch (err) {
      throw storeError(err, doing);
    }
  }

  /**
   * A pooled connection with `sql` (a BEGIN) run on it. A connection the server dropped while idle
   * fails here, before anything ran: one retry on a fresh one.
   */
  private async begin(doing: string, sql: string): Promise<pg.PoolClient> {
    for (let attempt = 0; ; attempt++) {
      const client = await this.connect(doing);
      try {
        await client.query(sql);
        return client;
      } catch (err) {
        client.release(true);
        if (attempt === 0 && isConnectionError(err)) continue;
        throw storeError(err, doing);
      }
    }
  }

  private async connect(doing: string): Promise<pg.PoolClient> {
    try {
      return await this.pool.connect();
    } catch (err) {
      throw storeError(err, doing);
    }
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    // Tracked only so close() can wait; the caller observes the result through `p`.
    void p.finally(() => this.inFlight.delete(p)).catch(() => undefined);
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('store is closed');
  }
}

/**
 * A write transaction's writer. Puts and deletes are buffered; they are sent (in one statement per
 * table) before a scan of their table and at commit, so reads see the transaction's own writes.
 * A key over {@link MAX_KEY_BYTES} fails the transaction, as it does on LMDB.
 */
class WriteTx {
  wrote = false;
  readonly changes: Change[] = [];
  private readonly pending = new Map<TableName, Map<string, unknown>>();
  private open = true;
  readonly writer: StoreWriter;
  /** The transaction's connection, its queries in call order. */
  readonly db: ReturnType<typeof serialized>;

  constructor(client: pg.PoolClient, base: number) {
    const db = (this.db = serialized(q(client)));
    const assertOpen = () => {
      if (!this.open) throw new Error('write transaction already finished');
    };
    this.writer = {
      get: async <T>(table: TableName, key: string) => {
        const name = tableName(table);
        const v = this.pending.get(table)?.get(key);
        if (v === DELETED) return undefined;
        if (v !== undefined) return v as T;
        return getRow<T>(db, name, key);
      },
      scan: async <T>(table: TableName, opts: ScanOptions) => {
        const name = tableName(table);
        // Queued on the connection before the scan, so the scan sees them.
        const flushed = this.flush(table);
        const [, rows] = await Promise.all([flushed, scanRows<T>(db, name, opts)]);
        return rows as Row<T>[];
      },
      revision: async () => base,
      put: (table, key, value) => {
        assertOpen();
        tableName(table);
        if (value === undefined) throw new Error('cannot put undefined; use del');
        this.buffer(table).set(key, value);
        this.wrote = true;
      },
      del: (table, key) => {
        assertOpen();
        tableName(table);
        this.buffer(table).set(key, DELETED);
        this.wrote = true;
      },
      emit: (change) => {
        assertOpen();
        this.changes.push(change);
      },
    };
  }

  finish(): void {
    this.open = false;
  }

  async flushAll(): Promise<void> {
    await Promise.all([...this.pending.keys()].map((t) => this.flush(t)));
  }

  private buffer(table: TableName): Map<string, unknown> {
    let m = this.pending.get(table);
    if (!m) this.pending.set(table, (m = new Map()));
    return m;
  }

  /** Sends the table's buffered writes; the statements are queued before this returns. */
  private flush(table: TableName): Promise<unknown> {
    const m = this.pending.get(table);
    if (!m || m.size === 0) return Promise.resolve();
    this.pending.delete(table);
    const name = tableName(table);
    const delKeys: Buffer[] = [];
    const putKeys: Buffer[] = [];
    const putValues: string[] = [];
    try {
      for (const [key, v] of m) {
        const k = encodeKey(key);
        if (k.length > MAX_KEY_BYTES)
          throw new Error(
            `Key size is larger than the maximum key size (${MAX_KEY_BYTES}): ${k.length} bytes`,
          );
        if (v === DELETED) delKeys.push(k);
        else {
          putKeys.push(k);
          putValues.push(JSON.stringify(v));
        }
      }
    } catch (err) {
      return Promise.reject(err);
    }
    const out: Promise<unknown>[] = [];
    if (delKeys.length > 0) out.push(this.db.query(`DELETE FROM ${name} WHERE key = ANY($1)`, [delKeys]));
    if (putKeys.length > 0) {
      out.push(
        this.db.query(
          `INSERT INTO ${name} (key, value) SELECT * FROM unnest($1::bytea[], $2::json[])
           ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value`,
          [putKeys, putValues],
        ),
      );
    }
    return Promise.all(out);
  }
}

function tableName(table: TableName): string {
  if (!TABLE_SET.has(table)) throw new Error(`unknown table: ${String(table)}`);
  return `act_${table}`;
}

function q(client: pg.PoolClient | pg.Pool): Queryable {
  return client as unknown as Queryable;
}

function decodeChanges(raw: Buffer[]): Change[] {
  return raw.map((b) => Change.decode(b));
}
