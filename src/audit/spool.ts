/**
 * The sidecar's audit spool: every decision's record is sealed into the sidecar's hash chain
 * and written to an append-only segment log before the decision's response may leave. The
 * guarantees (and what is not guaranteed) are in ./README.md.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../common/options';
import { AuditRecord } from '../gen/act/v1/admin';
import { AuditChain } from './chain';
import { FRAME_HEADER_BYTES, SegmentLog, type FrameRef, type RecoveryReport } from './segment-log';
import { ACKED, IN_FLIGHT, PENDING, SpoolIndex } from './spool-index';

/**
 * When `append` resolves: `disk` — the record is in an fdatasync'd group commit; `os` — the
 * record is in the kernel (survives a process crash), fdatasync'd within `flushIntervalMs`.
 */
export type Durability = 'disk' | 'os';

export interface SpoolLogger {
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AuditSpoolConfig {
  /** The spool directory; keep it apart from the replica. */
  dir: string;
  /** This sidecar's id: the source of its hash chain. */
  source: string;
  /** Default `disk`. */
  durability?: Durability;
  /** `os` mode: fdatasync every this many ms when something was written. Default 5. */
  flushIntervalMs?: number;
  /** Unacked bytes at which the spool is full. Default 512 MiB. */
  maxBytes?: number;
  /** Full spool: `fail` rejects appends with SPOOL_FULL (default); `drop-oldest` drops whole oldest segments, counted and logged. */
  onFull?: 'fail' | 'drop-oldest';
  /** Segment file size. Default 8 MiB. */
  segmentBytes?: number;
  /** Default: silent. Pass the process logger. */
  logger?: SpoolLogger;
}

export const SPOOL_DEFAULTS = {
  durability: 'disk' as Durability,
  flushIntervalMs: 5,
  maxBytes: 512 * 1024 * 1024,
  onFull: 'fail' as 'fail' | 'drop-oldest',
  segmentBytes: 8 * 1024 * 1024,
};

/** All problems with a spool config (empty when valid). */
export function validateSpoolConfig(c: AuditSpoolConfig): string[] {
  const p: string[] = [];
  if (!c.dir) p.push('audit spool: dir is required');
  if (!c.source) p.push('audit spool: source (the sidecar id) is required');
  if (c.durability !== undefined && c.durability !== 'disk' && c.durability !== 'os')
    p.push(`audit spool: durability must be "disk" or "os", not ${JSON.stringify(c.durability)}`);
  if (c.onFull !== undefined && c.onFull !== 'fail' && c.onFull !== 'drop-oldest')
    p.push(`audit spool: onFull must be "fail" or "drop-oldest", not ${JSON.stringify(c.onFull)}`);
  const positive = (name: string, v: number | undefined): void => {
    if (v !== undefined && !(Number.isFinite(v) && v > 0))
      p.push(`audit spool: ${name} must be a positive number`);
  };
  positive('flushIntervalMs', c.flushIntervalMs);
  positive('maxBytes', c.maxBytes);
  positive('segmentBytes', c.segmentBytes);
  return p;
}

export type SpoolErrorCode = 'SPOOL_FULL' | 'SPOOL_FAILED' | 'SPOOL_CLOSED';

/** An append that was not made safe; the caller fails the check closed (UNAVAILABLE). */
export class SpoolError extends Error {
  constructor(
    readonly code: SpoolErrorCode,
    message: string,
    cause?: unknown,
  ) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'SpoolError';
  }
}

/** Records to ship upstream; ack or nack by `batchId`. */
export interface AuditBatch {
  batchId: string;
  records: AuditRecord[];
}

interface Waiter {
  resolve: () => void;
  reject: (err: Error) => void;
}

const ACKED_FILE = 'acked';
/** The acked mark is rewritten at most this often (see advanceDone). */
const MARK_INTERVAL_MS = 1000;
const silent: SpoolLogger = { warn: () => undefined, error: () => undefined };

/**
 * The acked mark: every frame before (`segment`, `end`) in file order is acked or dropped.
 * A position, not a seq, so it stays right when the sidecar id (and so the chain) changes.
 * `seq` is the last such record's seq, for people and logs.
 */
interface AckedMark {
  seq: number;
  segment: number;
  end: number;
}

function readAckedMarker(dir: string): AckedMark {
  try {
    const m = JSON.parse(readFileSync(path.join(dir, ACKED_FILE), 'utf8')) as Partial<AckedMark>;
    if ([m.seq, m.segment, m.end].every((v) => Number.isSafeInteger(v) && (v as number) >= 0))
      return m as AckedMark;
  } catch {
    // Missing or unreadable: everything on disk is shipped again (the control plane dedupes).
  }
  return { seq: 0, segment: 0, end: 0 };
}

export class AuditSpool {
  private readonly index = new SpoolIndex();
  private readonly batches = new Map<string, { start: number; end: number }>();
  private readonly logger: SpoolLogger;
  private readonly maxBytes: number;
  private readonly onFull: 'fail' | 'drop-oldest';
  private waiters: Waiter[] = [];
  private syncing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  /** Index positions below this are fdatasync'd; only those are shipped. */
  private durablePos = 0;
  /** Next index position to look at for a batch. */
  private cursor = 0;
  /** Everything before this is acked or dropped (persisted in `<dir>/acked`). */
  private done: AckedMark;
  /** The segment holding the chain head: never deleted, so the head survives restarts. */
  private headSegment: number;
  private failed: Error | undefined;
  private closing = false;
  private markWrittenAt = 0;
  private markTimer: NodeJS.Timeout | undefined;
  private batchCounter = 0;
  /**
   * Sources other than this spool's own with records unshipped at open: chains of an earlier
   * sidecar id. Their records ship under their own chains (the Hello names these ids).
   */
  earlierSources: string[] = [];
  private dropped = 0;
  private syncs = 0;
  /**
   * Records sealed this event-loop turn, written together at its end (one write for all the
   * checks answered in the turn); each append resolves only after its record is written.
   */
  private pending: { seq: number; payload: Uint8Array; prev: { seq: number; hash: string }; w: Waiter }[] =
    [];
  private pendingBytes = 0;
  private writeScheduled = false;

  private constructor(
    private readonly cfg: AuditSpoolConfig & { durability: Durability },
    private readonly log: SegmentLog,
    private chain: AuditChain,
    /** What recovery found on open. */
    readonly recovery: RecoveryReport,
    done: AckedMark,
    headSegment: number,
  ) {
    this.logger = cfg.logger ?? silent;
    this.maxBytes = cfg.maxBytes ?? SPOOL_DEFAULTS.maxBytes;
    this.onFull = cfg.onFull ?? SPOOL_DEFAULTS.onFull;
    this.done = done;
    this.headSegment = headSegment;
  }

  /** Opens (creating) the spool and recovers it: chain head, pending records, torn or corrupt segments. */
  static async open(cfg: AuditSpoolConfig): Promise<AuditSpool> {
    const problems = validateSpoolConfig(cfg);
    if (problems.length > 0) throw new ConfigError(problems);
    const done = readAckedMarker(cfg.dir);
    const pending: { seq: number; ref: FrameRef }[] = [];
    const sources = new Set<string>();
    let head: { seq: number; hash: string; source: string; segment: number } | undefined;
    const { log, report } = SegmentLog.open(cfg.dir, { segmentBytes: cfg.segmentBytes }, (ref, payload) => {
      const r = AuditRecord.decode(payload);
      head = { seq: r.seq, hash: r.hash, source: r.source, segment: ref.segment };
      if (ref.segment > done.segment || (ref.segment === done.segment && ref.offset >= done.end)) {
        pending.push({ seq: r.seq, ref });
        sources.add(r.source);
      }
    });
    const logger = cfg.logger ?? silent;
    if (report.tornTail)
      logger.warn({ ...report.tornTail }, 'audit spool: truncated a torn write at the tail');
    for (const c of report.corrupt)
      logger.error(
        { ...c },
        'audit spool: corrupt segment moved aside; records after the damage are not shipped',
      );
    let chain: AuditChain;
    if (head && head.source === cfg.source) chain = new AuditChain(cfg.source, head.seq, head.hash);
    else {
      if (done.seq > 0 && !head)
        logger.warn(
          { ackedSeq: done.seq },
          'audit spool: chain head not found; continuing the seq after the acked mark',
        );
      chain = new AuditChain(cfg.source, head ? 0 : done.seq, '');
    }
    const spool = new AuditSpool(
      { ...cfg, durability: cfg.durability ?? SPOOL_DEFAULTS.durability },
      log,
      chain,
      report,
      done,
      head?.segment ?? log.currentSegment,
    );
    for (const p of pending) spool.index.push(p.seq, p.ref);
    sources.delete(cfg.source);
    spool.earlierSources = [...sources].sort();
    spool.durablePos = spool.index.tail; // recovery fdatasync'd every segment
    spool.removeDoneSegments();
    if (spool.cfg.durability === 'os') {
      const every = cfg.flushIntervalMs ?? SPOOL_DEFAULTS.flushIntervalMs;
      spool.timer = setInterval(() => spool.startSync(), every);
      spool.timer.unref(); // the flush must not keep the process alive; close() flushes
    }
    return spool;
  }

  /**
   * Seals `record` into this sidecar's chain (sets source, seq, prev_hash, hash) and writes it,
   * in one synchronous step, so seq order is file order. Resolves when the record is safe at the
   * configured durability; rejects with a SpoolError (SPOOL_FULL, SPOOL_FAILED, SPOOL_CLOSED)
   * when it is not — the caller fails the decision closed.
   */
  append(record: AuditRecord): Promise<void> {
    if (this.closing) return Promise.reject(new SpoolError('SPOOL_CLOSED', 'audit spool is closed'));
    if (this.failed)
      return Promise.reject(
        new SpoolError('SPOOL_FAILED', 'audit spool failed; restart to recover', this.failed),
      );
    let mustDrop = false;
    if (this.index.bytes + this.pendingBytes >= this.maxBytes) {
      if (this.onFull === 'fail')
        return Promise.reject(
          new SpoolError(
            'SPOOL_FULL',
            `audit spool full: ${this.index.length} unacked records, ${this.index.bytes} bytes`,
          ),
        );
      mustDrop = true;
    }
    if (!mustDrop) return this.appendBatched(record);
    // Dropping rewrites what is on disk: the turn's records go first, then this one alone.
    this.writePending();
    if (this.failed)
      return Promise.reject(
        new SpoolError('SPOOL_FAILED', 'audit spool failed; restart to recover', this.failed),
      );
    const prev = this.chain.last;
    try {
      // Dropping needs the oldest records out of the segment being written.
      if (
        mustDrop &&
        this.index.length > 0 &&
        this.index.segment(this.index.head) === this.log.currentSegment
      )
        this.log.rotate();
      const ref = this.log.append(this.chain.sealEncoded(record));
      this.index.push(record.seq, ref);
      this.headSegment = ref.segment;
    } catch (err) {
      this.chain = new AuditChain(this.cfg.source, prev.seq, prev.hash); // the record was not written
      return Promise.reject(
        new SpoolError('SPOOL_FAILED', `audit spool write failed: ${(err as Error).message}`, err),
      );
    }
    if (mustDrop) {
      try {
        this.dropOldest();
      } catch (err) {
        this.fail(err as Error);
        return Promise.reject(
          new SpoolError('SPOOL_FAILED', `audit spool drop failed: ${(err as Error).message}`, err),
        );
      }
    }
    if (this.cfg.durability === 'os') return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.startSync();
    });
  }

  /** Seals now (seq order is file order) and writes at the end of this event-loop turn. */
  private appendBatched(record: AuditRecord): Promise<void> {
    const prev = this.chain.last;
    let payload: Uint8Array;
    try {
      payload = this.chain.sealEncoded(record);
    } catch (err) {
      this.chain = new AuditChain(this.cfg.source, prev.seq, prev.hash);
      return Promise.reject(
        new SpoolError('SPOOL_FAILED', `audit spool write failed: ${(err as Error).message}`, err),
      );
    }
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ seq: record.seq, payload, prev, w: { resolve, reject } });
      this.pendingBytes += payload.length + FRAME_HEADER_BYTES;
      if (!this.writeScheduled) {
        this.writeScheduled = true;
        setImmediate(() => this.writePending());
      }
    });
  }

  /** Writes the turn's sealed records in one write, then answers or joins the group commit. */
  private writePending(): void {
    this.writeScheduled = false;
    const batch = this.pending;
    if (batch.length === 0) return;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.failed) {
      const first = batch[0]!.prev;
      this.chain = new AuditChain(this.cfg.source, first.seq, first.hash);
      const e = new SpoolError('SPOOL_FAILED', 'audit spool failed; restart to recover', this.failed);
      for (const p of batch) p.w.reject(e);
      return;
    }
    const { refs, error } = this.log.appendMany(batch.map((p) => p.payload));
    for (let i = 0; i < refs.length; i++) this.index.push(batch[i]!.seq, refs[i]!);
    if (refs.length > 0) this.headSegment = refs[refs.length - 1]!.segment;
    const written = batch.slice(0, refs.length);
    if (error !== undefined) {
      // What was not written is refused; the chain continues from the last record written.
      const next = batch[refs.length]!.prev;
      this.chain = new AuditChain(this.cfg.source, next.seq, next.hash);
      const e = new SpoolError(
        'SPOOL_FAILED',
        `audit spool write failed: ${(error as Error).message}`,
        error,
      );
      for (const p of batch.slice(refs.length)) p.w.reject(e);
    }
    if (this.cfg.durability === 'os') {
      for (const p of written) p.w.resolve();
      return;
    }
    for (const p of written) this.waiters.push(p.w);
    this.startSync();
  }

  /** Same as `append` (which always seals). */
  sealAndAppend(record: AuditRecord): Promise<void> {
    return this.append(record);
  }

  /**
   * The oldest durable, unacked, not-in-flight records (seq order), marked in flight, or
   * undefined when there are none. At least one record is returned even if it exceeds `maxBytes`.
   */
  nextBatch(maxRecords = 500, maxBytes = 1024 * 1024): AuditBatch | undefined {
    const raw = this.nextRawBatch(maxRecords, maxBytes);
    return raw && { batchId: raw.batchId, records: raw.frames.map((b) => AuditRecord.decode(b)) };
  }

  /**
   * Like nextBatch, but the records stay the encoded AuditRecords the spool holds (what
   * the sync client ships): no decode and re-encode per record.
   */
  nextRawBatch(maxRecords = 500, maxBytes = 1024 * 1024): { batchId: string; frames: Buffer[] } | undefined {
    const ix = this.index;
    const limit = Math.min(this.durablePos, ix.tail);
    let p = Math.max(this.cursor, ix.head);
    while (p < limit && ix.state(p) !== PENDING) p++;
    const start = p;
    let bytes = 0;
    while (p < limit && ix.state(p) === PENDING && p - start < maxRecords) {
      const size = ix.ref(p).size;
      if (p > start && bytes + size > maxBytes) break;
      bytes += size;
      p++;
    }
    this.cursor = p;
    if (p === start) return undefined;
    const refs: FrameRef[] = [];
    for (let q = start; q < p; q++) refs.push(ix.ref(q));
    let frames: Buffer[];
    try {
      frames = this.log.read(refs);
    } catch (err) {
      this.cursor = start;
      throw err;
    }
    for (let q = start; q < p; q++) ix.setState(q, IN_FLIGHT);
    const batchId = `${this.cfg.source}:${ix.seq(start)}-${ix.seq(p - 1)}:${++this.batchCounter}`;
    this.batches.set(batchId, { start, end: p });
    return { batchId, frames };
  }

  /**
   * The control plane stored the batch: its records are done. Advances the acked mark and
   * deletes segments with nothing left to ship (never the one holding the chain head).
   * Returns false for an unknown batch id (e.g. after `resetInFlight`).
   */
  ack(batchId: string): boolean {
    const b = this.batches.get(batchId);
    if (!b) return false;
    this.batches.delete(batchId);
    for (let p = Math.max(b.start, this.index.head); p < b.end; p++)
      if (this.index.state(p) === IN_FLIGHT) this.index.setState(p, ACKED);
    this.advanceDone();
    return true;
  }

  /** The batch was not stored: its records are shipped again. */
  nack(batchId: string): boolean {
    const b = this.batches.get(batchId);
    if (!b) return false;
    this.batches.delete(batchId);
    const from = Math.max(b.start, this.index.head);
    for (let p = from; p < b.end; p++) if (this.index.state(p) === IN_FLIGHT) this.index.setState(p, PENDING);
    this.cursor = Math.min(this.cursor, from);
    return true;
  }

  /** On disconnect: every in-flight batch is shipped again (at-least-once). */
  resetInFlight(): void {
    for (const id of [...this.batches.keys()]) this.nack(id);
  }

  /** Unacked records (pending or in flight). */
  get depth(): number {
    return this.index.length;
  }

  /** Bytes of unacked records on disk (frames). */
  get unackedBytes(): number {
    return this.index.bytes;
  }

  /** Records dropped by `onFull: 'drop-oldest'` since open. */
  get droppedTotal(): number {
    return this.dropped;
  }

  /** fdatasync calls completed by the group commit / flush timer since open. */
  get syncCount(): number {
    return this.syncs;
  }

  /** The chain head: last sealed seq and hash. */
  get head(): { seq: number; hash: string } {
    return this.chain.last;
  }

  /** Makes everything appended so far durable. */
  async flush(): Promise<void> {
    this.writePending();
    for (;;) {
      if (this.syncing) {
        await this.syncing;
        continue;
      }
      if (this.failed) throw new SpoolError('SPOOL_FAILED', 'audit spool failed', this.failed);
      if (this.durablePos >= this.index.tail && this.waiters.length === 0) return;
      this.startSync();
    }
  }

  /** Rejects new appends, flushes, closes the files. Unacked records stay for the next open. */
  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    if (this.timer) clearInterval(this.timer);
    if (this.markTimer) {
      clearTimeout(this.markTimer);
      this.markTimer = undefined;
      this.writeAckedMarker();
    }
    try {
      await this.flush();
    } finally {
      this.log.close();
    }
  }

  /** One fdatasync for everything written so far (a group commit), unless one is running. */
  private startSync(): void {
    if (this.syncing || this.failed) return;
    if (this.waiters.length === 0 && this.durablePos >= this.index.tail) return;
    const group = this.waiters;
    this.waiters = [];
    const upto = this.index.tail;
    this.syncing = this.log.sync().then(
      () => {
        this.syncs++;
        this.durablePos = Math.max(this.durablePos, upto);
        for (const w of group) w.resolve();
      },
      (err: Error) => {
        this.fail(err);
        for (const w of group)
          w.reject(new SpoolError('SPOOL_FAILED', `audit spool fdatasync failed: ${err.message}`, err));
      },
    );
    // Records written while this commit ran form the next group.
    void this.syncing.finally(() => {
      this.syncing = undefined;
      if (this.waiters.length > 0) this.startSync();
    });
  }

  /**
   * After a failed fdatasync the page cache's state is unknown (a retry can report success for
   * lost data), so the spool fails closed until a restart recovers from what is on disk.
   */
  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = err;
    this.logger.error({ err }, 'audit spool: fdatasync failed; failing appends closed until restart');
    const waiting = this.waiters;
    this.waiters = [];
    for (const w of waiting)
      w.reject(new SpoolError('SPOOL_FAILED', `audit spool failed: ${err.message}`, err));
  }

  /** Full with `drop-oldest`: drop whole oldest segments (never the one being written). */
  private dropOldest(): void {
    const ix = this.index;
    let count = 0;
    const segments: number[] = [];
    while (ix.bytes >= this.maxBytes && ix.length > 0) {
      const seg = ix.segment(ix.head);
      if (seg === this.log.currentSegment) break;
      while (ix.length > 0 && ix.segment(ix.head) === seg) {
        if (ix.state(ix.head) !== ACKED) count++;
        this.markDone(ix.head);
        ix.shift();
      }
      segments.push(seg);
    }
    if (segments.length === 0) return;
    this.dropped += count;
    this.logger.warn(
      { dropped: count, droppedTotal: this.dropped, segments: segments.length, maxBytes: this.maxBytes },
      'audit spool full: dropped the oldest unshipped records',
    );
    // The chain head must be durable before older segments go, or a power loss could lose it.
    this.log.syncNow();
    this.durablePos = ix.tail;
    this.cursor = Math.max(this.cursor, ix.head);
    this.advanceDone();
    this.writeAckedMarker();
    this.removeDoneSegments();
  }

  /** Pops acked records off the front; persists the mark and deletes finished segments. */
  private advanceDone(): void {
    const ix = this.index;
    const before = this.done;
    while (ix.length > 0 && ix.state(ix.head) === ACKED) {
      this.markDone(ix.head);
      ix.shift();
    }
    if (this.done === before) return;
    // The mark is rewritten at most once a second (a write and a rename per ack would cost
    // more than shipping the records), but always before a segment it points past is deleted.
    if (this.segmentsDone().length > 0 || performance.now() - this.markWrittenAt >= MARK_INTERVAL_MS) {
      this.writeAckedMarker();
      this.removeDoneSegments();
    } else if (this.markTimer === undefined) {
      this.markTimer = setTimeout(() => {
        this.markTimer = undefined;
        if (!this.closing) this.writeAckedMarker();
      }, MARK_INTERVAL_MS);
      this.markTimer.unref();
    }
  }

  /**
   * Write-then-rename, no fsync: a lost or stale mark only ships acked records again, and the
   * control plane stores by audit id.
   */
  private writeAckedMarker(): void {
    this.markWrittenAt = performance.now();
    const file = path.join(this.cfg.dir, ACKED_FILE);
    writeFileSync(`${file}.tmp`, `${JSON.stringify(this.done)}\n`);
    renameSync(`${file}.tmp`, file);
  }

  private markDone(pos: number): void {
    const ref = this.index.ref(pos);
    this.done = { seq: this.index.seq(pos), segment: ref.segment, end: ref.offset + ref.size };
  }

  /** Deletes segments older than both the oldest unacked record and the chain head. */
  private removeDoneSegments(): void {
    const done = this.segmentsDone();
    if (done.length > 0) this.log.remove(done);
  }

  /** Segments older than both the oldest unacked record and the chain head. */
  private segmentsDone(): number[] {
    const ix = this.index;
    const keepFrom = Math.min(this.headSegment, ix.length > 0 ? ix.segment(ix.head) : Infinity);
    return this.log.segmentIds().filter((id) => id < keepFrom);
  }
}
