import { strict as assert } from 'node:assert';
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AuditSpool,
  verifyChain,
  type AuditSpoolConfig,
  type Durability,
  type SpoolError,
} from '../../../src/audit';
import { encodeFrame } from '../../../src/audit/segment-log';
import { AuditRecord } from '../../../src/gen/act/v1/admin';

const rec = (i: number): AuditRecord =>
  AuditRecord.fromPartial({
    audit_id: `audit_${String(i).padStart(6, '0')}`,
    time: new Date(1_700_000_000_000 + i).toISOString(),
    action: 'files.read',
    resource: `file:/data/${i}.csv`,
    reason: 'allowed by policy_a',
    policy_ids: ['policy_a'],
  });

describe('audit/spool', () => {
  let dir: string;
  let open: AuditSpool[] = [];
  const spoolAt = async (cfg: Partial<AuditSpoolConfig> = {}): Promise<AuditSpool> => {
    const s = await AuditSpool.open({ dir, source: 'sc_test', ...cfg });
    open.push(s);
    return s;
  };
  const closeAll = async (): Promise<void> => {
    for (const s of open) await s.close();
    open = [];
  };
  const segments = (): string[] =>
    readdirSync(dir)
      .filter((f) => /^seg-\d{8}\.log$/.test(f))
      .sort();
  /** Every pending record, left pending. */
  const pendingRecords = (s: AuditSpool): AuditRecord[] => {
    const out: AuditRecord[] = [];
    const ids: string[] = [];
    for (let b = s.nextBatch(100_000, Infinity); b; b = s.nextBatch(100_000, Infinity)) {
      out.push(...b.records);
      ids.push(b.batchId);
    }
    for (const id of ids) s.nack(id);
    return out;
  };
  const appendAll = async (s: AuditSpool, from: number, n: number): Promise<void> => {
    await Promise.all(Array.from({ length: n }, (_, k) => s.append(rec(from + k))));
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'act-spool-'));
  });
  afterEach(async () => {
    await closeAll();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const durability of ['disk', 'os'] as Durability[]) {
    it(`${durability}: round trip across reopen, chain continues`, async () => {
      const a = await spoolAt({ durability });
      await appendAll(a, 0, 30);
      assert.equal(a.head.seq, 30);
      await closeAll();
      const b = await spoolAt({ durability });
      assert.equal(b.depth, 30);
      assert.equal(b.head.seq, 30);
      await appendAll(b, 30, 20);
      await b.flush();
      const all = pendingRecords(b);
      assert.deepEqual(
        all.map((r) => r.audit_id),
        Array.from({ length: 50 }, (_, i) => rec(i).audit_id),
      );
      assert.deepEqual(
        all.map((r) => r.seq),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      assert.ok(all.every((r) => r.source === 'sc_test'));
      assert.deepEqual(verifyChain(all), []);
    });
  }

  describe('one write per event-loop turn', () => {
    /** Counts (and can fail) fs.writeSync calls on the spool's segments while `fn` runs. */
    const withWrites = async (failAt: number | undefined, fn: () => Promise<void>): Promise<number> => {
      const real = fs.writeSync;
      let n = 0;
      (fs as { writeSync: unknown }).writeSync = (...args: Parameters<typeof fs.writeSync>) => {
        if (++n === failAt)
          throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        return (real as (...a: unknown[]) => number)(...args);
      };
      try {
        await fn();
      } finally {
        (fs as { writeSync: unknown }).writeSync = real;
      }
      return n;
    };

    for (const durability of ['os', 'disk'] as Durability[]) {
      it(`${durability}: 50 appends in one turn are one write; each resolves only once its record is in the file`, async () => {
        const s = await spoolAt({ durability });
        const sizeNow = () => segments().reduce((n, f) => n + readFileSync(join(dir, f)).length, 0);
        const writes = await withWrites(undefined, async () => {
          const sizes = await Promise.all(
            Array.from({ length: 50 }, (_, k) => s.append(rec(k)).then(() => sizeNow())),
          );
          // Every record is in the file when its append resolves: by then the file holds all 50.
          for (const size of sizes) assert.ok(size >= 50 * 8, `file was ${size} bytes at a resolve`);
        });
        assert.equal(writes, 1);
        await s.flush(); // os: shipped once the flush timer made them durable
        const all = pendingRecords(s);
        assert.equal(all.length, 50);
        assert.deepEqual(verifyChain(all), []);
      });
    }

    it('a turn larger than a segment is written one segment at a time, rotating as single appends do', async () => {
      const s = await spoolAt({ segmentBytes: 1024 });
      const writes = await withWrites(undefined, () => appendAll(s, 0, 40));
      assert.ok(segments().length >= 4, `segments: ${segments().length}`);
      assert.equal(writes, segments().length);
    });

    it('a failed write refuses what it did not write; what was written stays, and the chain has no gap', async () => {
      const s = await spoolAt({ segmentBytes: 1024 });
      const results: string[] = [];
      await withWrites(2, async () => {
        await Promise.all(
          Array.from({ length: 40 }, (_, k) =>
            s.append(rec(k)).then(
              () => results.push('ok'),
              (e: SpoolError) => results.push(e.code),
            ),
          ),
        );
      });
      const ok = results.filter((r) => r === 'ok').length;
      assert.ok(ok > 0 && ok < 40, `written ${ok} of 40`);
      assert.deepEqual([...new Set(results.filter((r) => r !== 'ok'))], ['SPOOL_FAILED']);
      // The next appends continue the chain from the last record written.
      await appendAll(s, 100, 3);
      await closeAll();
      const b = await spoolAt({ segmentBytes: 1024 });
      const all = pendingRecords(b);
      assert.equal(all.length, ok + 3);
      assert.deepEqual(verifyChain(all), []);
      assert.deepEqual(
        all.map((r) => r.seq),
        Array.from({ length: ok + 3 }, (_, i) => i + 1),
      );
    });
  });

  it('truncates a torn tail (half a frame, or zeros) and keeps appending', async () => {
    const a = await spoolAt();
    await appendAll(a, 0, 5);
    await closeAll();
    const last = join(dir, segments().at(-1)!);
    const frame = encodeFrame(AuditRecord.encode(rec(99)).finish());
    appendFileSync(last, frame.subarray(0, 20));
    const b = await spoolAt();
    assert.deepEqual(b.recovery.tornTail?.droppedBytes, 20);
    assert.equal(b.depth, 5);
    await appendAll(b, 5, 1);
    await closeAll();
    appendFileSync(last, Buffer.alloc(64));
    const c = await spoolAt();
    assert.equal(c.recovery.tornTail?.droppedBytes, 64);
    const all = pendingRecords(c);
    assert.equal(all.length, 6);
    assert.deepEqual(verifyChain(all), []);
  });

  it('moves a corrupt older segment aside, keeps its valid prefix and reports it', async () => {
    const errors: object[] = [];
    const logger = { warn: () => undefined, error: (o: object) => void errors.push(o) };
    const a = await spoolAt({ segmentBytes: 1024 });
    await appendAll(a, 0, 40);
    await closeAll();
    const segs = segments();
    assert.ok(segs.length >= 4, `want several segments, got ${segs.length}`);
    const victim = join(dir, segs[1]!);
    const bytes = readFileSync(victim);
    bytes[bytes.length - 10] ^= 0xff; // inside the segment's last frame
    writeFileSync(victim, bytes);
    const b = await spoolAt({ segmentBytes: 1024, logger });
    assert.equal(b.recovery.corrupt.length, 1);
    assert.equal(b.recovery.corrupt[0]!.segment, segs[1]);
    assert.ok(existsSync(`${victim}.corrupt`));
    assert.equal(errors.length, 1);
    const all = pendingRecords(b);
    assert.equal(all.length, 39, 'only the damaged frame is lost');
    const problems = verifyChain(all);
    assert.ok(problems.length > 0 && problems.every((p) => p.seq === problems[0]!.seq), 'one gap, detected');
    await appendAll(b, 40, 3);
    assert.equal(b.head.seq, 43);
  });

  it('ships in batches; ack deletes finished segments but keeps the newest', async () => {
    const a = await spoolAt({ segmentBytes: 1024 });
    await appendAll(a, 0, 40);
    const before = segments().length;
    const b1 = a.nextBatch(15)!;
    assert.deepEqual(
      b1.records.map((r) => r.seq),
      Array.from({ length: 15 }, (_, i) => i + 1),
    );
    assert.ok(a.ack(b1.batchId));
    assert.equal(a.depth, 25);
    assert.equal((JSON.parse(readFileSync(join(dir, 'acked'), 'utf8')) as { seq: number }).seq, 15);
    assert.ok(segments().length < before);
    const b2 = a.nextBatch(100)!;
    assert.equal(b2.records[0]!.seq, 16);
    assert.equal(b2.records.length, 25);
    a.ack(b2.batchId);
    assert.equal(a.depth, 0);
    assert.equal(a.unackedBytes, 0);
    assert.equal(segments().length, 1, 'the newest segment (chain head) stays');
    await closeAll();
    const b = await spoolAt({ segmentBytes: 1024 });
    assert.equal(b.depth, 0);
    assert.equal(b.head.seq, 40);
    await b.append(rec(40));
    const next = pendingRecords(b);
    assert.equal(next.length, 1);
    assert.equal(next[0]!.seq, 41);
  });

  it('nack and resetInFlight ship records again; a stale ack is ignored', async () => {
    const a = await spoolAt();
    await appendAll(a, 0, 10);
    const b1 = a.nextBatch(5)!;
    const b2 = a.nextBatch(5)!;
    assert.equal(a.nextBatch(5), undefined);
    assert.ok(a.nack(b1.batchId));
    const again = a.nextBatch(100)!;
    assert.deepEqual(
      again.records.map((r) => r.seq),
      [1, 2, 3, 4, 5],
    );
    a.resetInFlight();
    assert.equal(a.ack(b2.batchId), false);
    assert.equal(a.depth, 10);
    const all = a.nextBatch(100)!;
    assert.equal(all.records.length, 10);
    a.ack(all.batchId);
    assert.equal(a.depth, 0);
  });

  it('re-delivers acked records when the acked mark is lost (at-least-once)', async () => {
    const a = await spoolAt();
    await appendAll(a, 0, 10);
    a.ack(a.nextBatch(100)!.batchId);
    await closeAll();
    assert.equal((await spoolAt()).depth, 0);
    await closeAll();
    rmSync(join(dir, 'acked'));
    const b = await spoolAt();
    assert.equal(b.depth, 10);
    assert.deepEqual(verifyChain(pendingRecords(b)), []);
  });

  it('full, onFull=fail: rejects with SPOOL_FULL until acks make room', async () => {
    const a = await spoolAt({ maxBytes: 2000 });
    let err: SpoolError | undefined;
    let n = 0;
    for (; n < 100 && !err; n++) await a.append(rec(n)).catch((e: SpoolError) => (err = e));
    assert.equal(err?.code, 'SPOOL_FULL');
    const depth = a.depth;
    assert.ok(depth > 0 && depth < 100);
    assert.equal(a.head.seq, depth, 'a rejected record is not sealed');
    a.ack(a.nextBatch(5)!.batchId);
    await a.append(rec(1000));
    assert.equal(a.head.seq, depth + 1);
  });

  it('full, onFull=drop-oldest: drops whole oldest segments, counts and logs them', async () => {
    const warns: Record<string, unknown>[] = [];
    const logger = {
      warn: (o: object) => void warns.push(o as Record<string, unknown>),
      error: () => undefined,
    };
    const a = await spoolAt({ segmentBytes: 1024, maxBytes: 3000, onFull: 'drop-oldest', logger });
    await appendAll(a, 0, 100);
    assert.ok(a.droppedTotal > 0);
    assert.equal(a.depth + a.droppedTotal, 100);
    assert.ok(a.unackedBytes < 3000 + 1024);
    assert.ok(warns.length > 0);
    assert.equal(
      warns.reduce((s, w) => s + (w.dropped as number), 0),
      a.droppedTotal,
    );
    const left = pendingRecords(a);
    assert.equal(left.at(-1)!.seq, 100);
    assert.deepEqual(verifyChain(left, { seq: left[0]!.seq - 1, hash: left[0]!.prev_hash }), []);
    await closeAll();
    const b = await spoolAt({ segmentBytes: 1024, maxBytes: 3000, onFull: 'drop-oldest' });
    assert.equal(b.depth, left.length);
  });

  it('full, onFull=drop-oldest with everything in one segment: rotates, then drops', async () => {
    const a = await spoolAt({ maxBytes: 2000, onFull: 'drop-oldest' });
    await appendAll(a, 0, 50);
    assert.ok(a.droppedTotal > 0);
    assert.equal(a.depth + a.droppedTotal, 50);
    await closeAll();
    const b = await spoolAt({ maxBytes: 2000, onFull: 'drop-oldest' });
    assert.equal(b.head.seq, 50, 'the chain head survives the drops');
  });

  it("a new sidecar id starts a new chain; the old chain's unacked records still ship", async () => {
    const a = await spoolAt();
    await appendAll(a, 0, 10);
    a.ack(a.nextBatch(4)!.batchId);
    await closeAll();
    const b = await spoolAt({ source: 'sc_renamed' });
    assert.equal(b.head.seq, 0);
    await appendAll(b, 10, 3);
    const all = pendingRecords(b);
    assert.deepEqual(
      all.map((r) => `${r.source}/${r.seq}`),
      [5, 6, 7, 8, 9, 10].map((q) => `sc_test/${q}`).concat(['sc_renamed/1', 'sc_renamed/2', 'sc_renamed/3']),
    );
    b.ack(b.nextBatch(100)!.batchId);
    await closeAll();
    const c = await spoolAt({ source: 'sc_renamed' });
    assert.equal(c.depth, 0);
    assert.equal(c.head.seq, 3);
  });

  it('disk: group commit, far fewer fdatasyncs than records', async () => {
    const a = await spoolAt({ durability: 'disk' });
    await appendAll(a, 0, 200);
    assert.ok(a.syncCount >= 1 && a.syncCount < 20, `syncCount ${a.syncCount}`);
    assert.equal(a.depth, 200);
  });

  it('os: append resolves before the flush; only flushed records are shipped', async () => {
    const a = await spoolAt({ durability: 'os', flushIntervalMs: 60_000 });
    await appendAll(a, 0, 3);
    assert.equal(a.syncCount, 0);
    assert.equal(a.nextBatch(), undefined);
    await a.flush();
    assert.equal(a.syncCount, 1);
    assert.equal(a.nextBatch()!.records.length, 3);
  });

  it('rejects appends after close', async () => {
    const a = await spoolAt();
    await a.close();
    await assert.rejects(a.append(rec(0)), { code: 'SPOOL_CLOSED' });
  });

  for (const durability of ['disk', 'os'] as Durability[]) {
    it(`${durability}: every record acknowledged before a SIGKILL is there after it`, async () => {
      const script = join(__dirname, '../../support/spool-writer.ts');
      const child = spawn(process.execPath, ['--import', 'tsx', script, dir, durability], {
        stdio: ['ignore', 'pipe', 'inherit'],
      });
      const printed: number[] = [];
      let buf = '';
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      await new Promise<void>((resolve, reject) => {
        child.on('exit', (code) => reject(new Error(`writer exited early (${code})`)));
        child.stdout.on('data', (d: Buffer) => {
          buf += d.toString();
          const lines = buf.split('\n');
          buf = lines.pop()!;
          for (const l of lines) printed.push(Number(l));
          if (printed.length >= 2000) {
            child.kill('SIGKILL');
            resolve();
          }
        });
      });
      await exited;
      const s = await spoolAt({ durability, segmentBytes: 16 * 1024 });
      const all = pendingRecords(s);
      const have = new Set(all.map((r) => r.seq));
      const missing = printed.filter((q) => !have.has(q));
      assert.deepEqual(missing, []);
      assert.deepEqual(verifyChain(all), []);
      assert.ok(all.length >= printed.length);
    });
  }
});
