import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { newSortableId, sortableIdTime } from '../../../src/common/ids';
import { openLmdbStore, type AuditRecord, type Change, type Store } from '../../../src/store';
import { auditIdAt } from '../../../src/store/lmdb/lmdb-audit';

const T0 = 1_700_000_000_000;

describe('LMDB store', () => {
  let base: string;
  const open: Store[] = [];
  let n = 0;

  before(() => {
    base = mkdtempSync(join(tmpdir(), 'act-store-'));
  });
  after(async () => {
    await Promise.all(open.map((s) => s.close()));
    rmSync(base, { recursive: true, force: true });
  });

  /** A fresh store in its own directory; closed in `after`. */
  async function fresh(opts: { changeLogRetention?: number; auditScanBudget?: number; dir?: string } = {}) {
    const dataDir = opts.dir ?? join(base, `s${n++}`);
    const s = await openLmdbStore({ dataDir, ...opts });
    open.push(s);
    return { s, dataDir };
  }

  const agentChange = (id: string): Change => ({
    kind: { $case: 'agent_deleted', value: id },
  });

  describe('tables', () => {
    let s: Store;
    before(async () => {
      ({ s } = await fresh());
      await s.write(async (w) => {
        for (const k of ['a1', 'a2', 'a3', 'b1', 'b2', 'c1']) w.put('agents', k, { id: k });
      });
    });

    it('creates the data directory with mode 0700', async () => {
      const { dataDir } = await fresh();
      assert.equal(statSync(dataDir).mode & 0o777, 0o700);
    });

    it('gets and scans committed rows (prefix, after, reverse, limit)', async () => {
      await s.read(async (r) => {
        assert.deepEqual(await r.get('agents', 'a2'), { id: 'a2' });
        assert.equal(await r.get('agents', 'zz'), undefined);
        assert.equal(await r.get('policies', 'a2'), undefined, 'tables are separate');
        const keys = async (o: Parameters<typeof r.scan>[1]) => (await r.scan('agents', o)).map((x) => x.key);
        assert.deepEqual(await keys({ limit: 100 }), ['a1', 'a2', 'a3', 'b1', 'b2', 'c1']);
        assert.deepEqual(await keys({ prefix: 'b', limit: 100 }), ['b1', 'b2']);
        assert.deepEqual(await keys({ prefix: 'a', after: 'a1', limit: 100 }), ['a2', 'a3']);
        assert.deepEqual(await keys({ after: 'a3', limit: 2 }), ['b1', 'b2']);
        assert.deepEqual(await keys({ reverse: true, limit: 3 }), ['c1', 'b2', 'b1']);
        assert.deepEqual(await keys({ prefix: 'a', reverse: true, limit: 100 }), ['a3', 'a2', 'a1']);
        assert.deepEqual(await keys({ prefix: 'a', reverse: true, after: 'a3', limit: 1 }), ['a2']);
        assert.deepEqual(await keys({ prefix: 'b', after: 'b2', limit: 100 }), []);
        assert.deepEqual(await keys({ prefix: 'a', after: 'zz', reverse: true, limit: 100 }), [
          'a3',
          'a2',
          'a1',
        ]);
        assert.deepEqual(await keys({ limit: 0 }), []);
      });
    });

    it('overlays buffered puts and deletes on reads inside a write', async () => {
      const { result } = await s.write(async (w) => {
        w.put('agents', 'a2', { id: 'a2', v: 2 });
        w.put('agents', 'a0', { id: 'a0' });
        w.put('agents', 'b3', { id: 'b3' });
        w.del('agents', 'a3');
        w.del('agents', 'b1');
        w.put('agents', 'z9', { id: 'z9' });
        w.del('agents', 'z9');
        const keys = async (o: Parameters<typeof w.scan>[1]) => (await w.scan('agents', o)).map((x) => x.key);
        const got = {
          a2: await w.get('agents', 'a2'),
          a3: await w.get('agents', 'a3'),
          all: await keys({ limit: 100 }),
          a: await w.scan('agents', { prefix: 'a', limit: 100 }),
          rev: await keys({ reverse: true, limit: 100 }),
          afterA1: await keys({ after: 'a1', limit: 3 }),
          revB: await keys({ prefix: 'b', reverse: true, limit: 100 }),
          revAfter: await keys({ reverse: true, after: 'b2', limit: 2 }),
          lim: await keys({ limit: 2 }),
        };
        // Committed state is untouched until the commit.
        assert.equal(await s.read((r) => r.get('agents', 'a3')).then((v) => v !== undefined), true);
        return got;
      });
      assert.deepEqual(result.a2, { id: 'a2', v: 2 });
      assert.equal(result.a3, undefined);
      assert.deepEqual(result.all, ['a0', 'a1', 'a2', 'b2', 'b3', 'c1']);
      assert.deepEqual(result.a, [
        { key: 'a0', value: { id: 'a0' } },
        { key: 'a1', value: { id: 'a1' } },
        { key: 'a2', value: { id: 'a2', v: 2 } },
      ]);
      assert.deepEqual(result.rev, ['c1', 'b3', 'b2', 'a2', 'a1', 'a0']);
      assert.deepEqual(result.afterA1, ['a2', 'b2', 'b3']);
      assert.deepEqual(result.revB, ['b3', 'b2']);
      assert.deepEqual(result.revAfter, ['a2', 'a1']);
      assert.deepEqual(result.lim, ['a0', 'a1']);
      const after = await s.read((r) => r.scan('agents', { limit: 100 }));
      assert.deepEqual(
        after.map((x) => x.key),
        ['a0', 'a1', 'a2', 'b2', 'b3', 'c1'],
      );
    });

    it('read() sees one snapshot across awaits', async () => {
      const { s: t } = await fresh();
      await t.write(async (w) => w.put('keys', 'k', { v: 1 }));
      const seen = await t.read(async (r) => {
        const before = await r.get<{ v: number }>('keys', 'k');
        await t.write(async (w) => w.put('keys', 'k', { v: 2 }));
        const later = await r.get<{ v: number }>('keys', 'k');
        return [before?.v, later?.v];
      });
      assert.deepEqual(seen, [1, 1]);
      assert.deepEqual(await t.read((r) => r.get('keys', 'k')), { v: 2 });
    });
  });

  describe('write transactions', () => {
    it('commits nothing when fn throws', async () => {
      const { s } = await fresh();
      await s.write(async (w) => {
        w.put('tokens', 't1', { n: 1 });
        w.emit(agentChange('agent_x'));
      });
      const rev = await s.revision();
      const events: number[] = [];
      s.onCommit((e) => events.push(e.revision));
      await assert.rejects(
        s.write(async (w) => {
          w.put('tokens', 't1', { n: 2 });
          w.put('tokens', 't2', { n: 2 });
          w.emit(agentChange('agent_y'));
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.equal(await s.revision(), rev);
      assert.deepEqual(await s.read((r) => r.get('tokens', 't1')), { n: 1 });
      assert.equal(await s.read((r) => r.get('tokens', 't2')), undefined);
      assert.deepEqual(await s.changesSince(rev), []);
      assert.deepEqual(events, []);
      // The queue keeps working after a failed write.
      assert.equal((await s.write(async (w) => w.put('tokens', 't3', {}))).revision, rev + 1);
    });

    it('commits nothing when LMDB rejects one write of the batch', async () => {
      const { s } = await fresh();
      await assert.rejects(
        s.write(async (w) => {
          w.put('tokens', 'ok', { n: 1 });
          w.put('tokens', 'k'.repeat(3000), { n: 2 }); // over LMDB's max key size
          w.emit(agentChange('agent_y'));
        }),
        /key size/i,
      );
      assert.equal(await s.revision(), 0);
      assert.equal(await s.read((r) => r.get('tokens', 'ok')), undefined);
      assert.deepEqual(await s.changesSince(0), []);
      await assert.rejects(
        s.audit.append([auditRec({ ms: T0 }), auditRec({ ms: T0, agent: 'a'.repeat(3000) })]),
      );
      assert.equal(await s.audit.count(), 0);
      assert.deepEqual(await s.audit.query({}, '', 10), { records: [], nextCursor: '' });
      assert.equal((await s.write(async (w) => w.put('tokens', 'ok', {}))).revision, 1);
    });

    it('bumps the revision once per changing commit, logs changes and notifies', async () => {
      const { s } = await fresh();
      const events: { revision: number; changes: Change[] }[] = [];
      const off = s.onCommit((e) => events.push(e));
      assert.equal(await s.revision(), 0);

      const r1 = await s.write(async (w) => {
        w.put('agents', 'agent_a', { name: 'a' });
        w.emit(agentChange('agent_a'));
        w.emit(agentChange('agent_b'));
        return 'ok';
      });
      assert.deepEqual(r1, { result: 'ok', revision: 1 });

      const r2 = await s.write(async (w) => w.get('agents', 'agent_a'));
      assert.equal(r2.revision, 1, 'a read-only write does not bump');

      const r3 = await s.write(async (w) => w.del('agents', 'nope'));
      assert.equal(r3.revision, 2, 'a write without emits still bumps');

      const r4 = await s.write(async (w) => w.emit(agentChange('agent_c')));
      assert.equal(r4.revision, 3, 'an emit without writes bumps');

      assert.equal(await s.revision(), 3);
      assert.deepEqual(await s.changesSince(0), [
        { revision: 1, changes: [agentChange('agent_a'), agentChange('agent_b')] },
        { revision: 2, changes: [] },
        { revision: 3, changes: [agentChange('agent_c')] },
      ]);
      assert.deepEqual(await s.changesSince(1, 1), [{ revision: 2, changes: [] }]);
      assert.deepEqual(await s.changesSince(3), []);
      assert.equal(await s.changesSince(4), 'too-old', 'a revision from the future must resync');
      assert.deepEqual(
        events.map((e) => [e.revision, e.changes.length]),
        [
          [1, 2],
          [2, 0],
          [3, 1],
        ],
      );
      off();
      await s.write(async (w) => w.emit(agentChange('agent_d')));
      assert.equal(events.length, 3, 'unsubscribed');
    });

    it('trims the change log beyond retention and reports too-old', async () => {
      const { s } = await fresh({ changeLogRetention: 3 });
      for (let i = 1; i <= 6; i++) await s.write(async (w) => w.emit(agentChange(`agent_${i}`)));
      assert.equal(await s.revision(), 6);
      // Retained: 4, 5, 6. From 3 onwards the log still reaches back.
      assert.deepEqual(
        ((await s.changesSince(3)) as { revision: number }[]).map((e) => e.revision),
        [4, 5, 6],
      );
      assert.equal(await s.changesSince(2), 'too-old');
      assert.equal(await s.changesSince(0), 'too-old');
    });

    it('serializes concurrent read-modify-write transactions', async () => {
      const { s } = await fresh();
      const bump = () =>
        s.write(async (w) => {
          const cur = (await w.get<{ n: number }>('index', 'counter'))?.n ?? 0;
          await new Promise((r) => setImmediate(r)); // give the other writers a chance to interleave
          w.put('index', 'counter', { n: cur + 1 });
          w.emit(agentChange(`agent_${cur}`));
          return cur;
        });
      const results = await Promise.all(Array.from({ length: 20 }, bump));
      assert.deepEqual(
        results.map((r) => r.result).sort((a, b) => a - b),
        Array.from({ length: 20 }, (_, i) => i),
      );
      assert.deepEqual(await s.read((r) => r.get('index', 'counter')), { n: 20 });
      assert.equal(await s.revision(), 20);
    });

    it('rejects late writes from a finished transaction', async () => {
      const { s } = await fresh();
      let writer: Parameters<Parameters<Store['write']>[0]>[0] | undefined;
      await s.write(async (w) => {
        writer = w;
      });
      assert.throws(() => writer!.put('agents', 'late', {}), /finished/);
      assert.throws(() => writer!.emit(agentChange('late')), /finished/);
      assert.equal(await s.revision(), 0);
    });

    it('round-trips bytes fields of changes', async () => {
      const { s } = await fresh();
      const key = Buffer.from(Array.from({ length: 32 }, (_, i) => i));
      const change: Change = {
        kind: { $case: 'public_key', value: { key_id: 'key_1', public_key: key, created_at_ms: T0 } },
      };
      const events: Change[][] = [];
      s.onCommit((e) => events.push(e.changes));
      await s.write(async (w) => w.emit(change));
      const log = await s.changesSince(0);
      assert.notEqual(log, 'too-old');
      const got = (log as { changes: Change[] }[])[0].changes[0];
      assert.deepEqual(got, change);
      assert.ok(got.kind?.$case === 'public_key' && got.kind.value.public_key instanceof Uint8Array);
      assert.deepEqual(events[0][0], change);
    });

    it('keeps storeId, revision and data across close and reopen', async () => {
      const { s, dataDir } = await fresh();
      await s.write(async (w) => {
        w.put('apikeys', 'ak_1', { hash: 'h' });
        w.emit(agentChange('agent_a'));
      });
      await s.audit.append([auditRec({ ms: T0 })]);
      const id = s.storeId;
      assert.match(id, /\S{16,}/);
      await s.close();
      await s.close(); // idempotent

      const { s: again } = await fresh({ dir: dataDir });
      assert.equal(again.storeId, id);
      assert.equal(await again.revision(), 1);
      assert.deepEqual(await again.read((r) => r.get('apikeys', 'ak_1')), { hash: 'h' });
      assert.deepEqual(await again.changesSince(0), [{ revision: 1, changes: [agentChange('agent_a')] }]);
      assert.equal(await again.audit.count(), 1);
      assert.equal((await again.write(async (w) => w.emit(agentChange('b')))).revision, 2);

      const { s: other } = await fresh();
      assert.notEqual(other.storeId, id, 'each data directory has its own id');
    });
  });

  describe('audit', () => {
    const AGENTS = ['agent_a', 'agent_b', 'agent_c'];
    const TOKENS = ['tok_1', 'tok_2', 'tok_3', 'tok_4'];
    const ACTIONS = ['files.read', 'files.write'];
    let s: Store;
    let all: AuditRecord[];

    before(async () => {
      ({ s } = await fresh({ auditScanBudget: 37 }));
      all = [];
      for (let i = 0; i < 300; i++) {
        all.push(
          auditRec({
            ms: T0 + i * 1000,
            agent: AGENTS[i % 3],
            token: TOKENS[i % 4],
            action: ACTIONS[i % 2],
            decision: 1 + (i % 3),
            reason: i % 5,
            source: i % 2 === 0 ? 'sc_even' : 'sc_odd',
            seq: i,
          }),
        );
      }
      // Out of order and in several batches, as retries may deliver them.
      const shuffled = [...all].reverse();
      for (let i = 0; i < shuffled.length; i += 50)
        assert.equal(await s.audit.append(shuffled.slice(i, i + 50)), 50);
    });

    it('appends idempotently and counts only new records', async () => {
      assert.equal(await s.audit.count(), 300);
      assert.equal(await s.audit.append(all.slice(0, 10)), 0);
      const extra = auditRec({ ms: T0 - 5000, agent: 'agent_z', source: 'sc_other', seq: 1 });
      assert.equal(await s.audit.append([extra, extra, all[3]]), 1);
      all.push(extra); // index 300; the queries below expect it
      assert.equal(await s.audit.count(), 301);
      assert.equal(await s.audit.append([]), 0);
      assert.deepEqual((await s.audit.query({ agent_id: 'agent_z' }, '', 10)).records, [extra]);
    });

    const cases: [string, Parameters<AuditStoreQuery>[0], (r: AuditRecord) => boolean][] = [
      ['agent', { agent_id: 'agent_b' }, (r) => r.agent_id === 'agent_b'],
      ['token', { token_id: 'tok_3' }, (r) => r.token_id === 'tok_3'],
      ['action', { action: 'files.write' }, (r) => r.action === 'files.write'],
      ['decision', { decision: 2 }, (r) => r.decision === 2],
      ['reason_code', { reason_code: 4 }, (r) => r.reason_code === 4],
      [
        'since/until',
        { sinceMs: T0 + 50_000, untilMs: T0 + 120_000 },
        (r) => inTime(r, T0 + 50_000, T0 + 120_000),
      ],
      [
        'agent + token + time',
        { agent_id: 'agent_a', token_id: 'tok_1', sinceMs: T0 + 10_000, untilMs: T0 + 250_500 },
        (r) => r.agent_id === 'agent_a' && r.token_id === 'tok_1' && inTime(r, T0 + 10_000, T0 + 250_500),
      ],
      [
        'token + action',
        { token_id: 'tok_2', action: 'files.write' },
        (r) => r.token_id === 'tok_2' && r.action === 'files.write',
      ],
      ['no match', { agent_id: 'agent_nobody' }, () => false],
      ['everything', {}, () => true],
    ];
    for (const [name, filter, pred] of cases) {
      it(`query by ${name}: newest first, every record exactly once across pages`, async () => {
        const expected = allStored()
          .filter(pred)
          .map((r) => r.audit_id)
          .reverse();
        const got: string[] = [];
        let cursor = '';
        let pages = 0;
        do {
          const page = await s.audit.query(filter, cursor, 7);
          assert.ok(page.records.length <= 7);
          got.push(...page.records.map((r) => r.audit_id));
          cursor = page.nextCursor;
          assert.ok(++pages < 1000, 'paging terminates');
        } while (cursor !== '');
        assert.deepEqual(got, expected);
      });
    }

    it('returns a cursor when the scan budget is spent', async () => {
      // 37 records examined per call, 1 in ~100 matches: the first page is empty but continues.
      const page = await s.audit.query({ reason_code: 4, decision: 3, action: 'files.write' }, '', 5);
      assert.equal(page.records.length <= 5, true);
      assert.notEqual(page.nextCursor, '');
    });

    it('rejects a malformed cursor', async () => {
      await assert.rejects(s.audit.query({}, 'not-a-cursor', 5), /cursor/);
    });

    it('exports oldest first with filters', async () => {
      const got: string[] = [];
      for await (const r of s.audit.export({ agent_id: 'agent_c', sinceMs: T0 + 30_000 }))
        got.push(r.audit_id);
      assert.deepEqual(
        got,
        all
          .filter((r) => r.agent_id === 'agent_c' && inTime(r, T0 + 30_000, Infinity))
          .map((r) => r.audit_id),
      );
    });

    it('tracks the highest-seq record per source', async () => {
      assert.deepEqual(await s.audit.lastOfSource('sc_even'), all[298]);
      assert.deepEqual(await s.audit.lastOfSource('sc_odd'), all[299]);
      assert.equal(await s.audit.lastOfSource('sc_unknown'), undefined);
    });

    it('notifies onAppend listeners with new records only', async () => {
      const seen: AuditRecord[][] = [];
      const off = s.audit.onAppend((rs) => seen.push(rs));
      const r1 = auditRec({ ms: T0 + 1_000_000, source: 'sc_even', seq: 1000 });
      await s.audit.append([r1, all[0]]);
      await s.audit.append([all[1]]);
      off();
      await s.audit.append([auditRec({ ms: T0 + 1_000_001 })]);
      assert.deepEqual(seen, [[r1]]);
      assert.deepEqual(await s.audit.lastOfSource('sc_even'), r1);
    });

    it('keeps the chain head per source across out-of-order batches and retries', async () => {
      const { s: st } = await fresh();
      const a = [1, 2, 3, 4].map((seq) => auditRec({ ms: T0 + seq, source: 'sc_a', seq }));
      const b = [1, 2].map((seq) => auditRec({ ms: T0 + 10 + seq, source: 'sc_b', seq }));
      // One batch, sources interleaved, the highest records first.
      await st.audit.append([a[3]!, b[1]!, a[0]!, b[0]!, a[1]!]);
      assert.deepEqual(await st.audit.lastOfSource('sc_a'), a[3]);
      assert.deepEqual(await st.audit.lastOfSource('sc_b'), b[1]);
      // A later batch holding only lower seqs (a retry) does not move the head back.
      await st.audit.append([a[2]!, a[1]!]);
      assert.deepEqual(await st.audit.lastOfSource('sc_a'), a[3]);
      assert.equal(await st.audit.count(), 6);
    });

    it('exports 20k records in order, in chunks', async () => {
      const { s: big } = await fresh();
      const recs = Array.from({ length: 20_000 }, (_, i) => auditRec({ ms: T0 + i, seq: i }));
      for (let i = 0; i < recs.length; i += 5000) await big.audit.append(recs.slice(i, i + 5000));
      let i = 0;
      for await (const r of big.audit.export({})) {
        assert.equal(r.audit_id, recs[i].audit_id);
        i++;
      }
      assert.equal(i, 20_000);
      assert.equal(await big.audit.count(), 20_000);
    });

    it('computes time bounds like common/ids', () => {
      for (const ms of [0, 1, T0, T0 + 123_456, 2 ** 40]) {
        const id = newSortableId('audit', ms);
        assert.ok(id.startsWith(auditIdAt(ms)));
        assert.equal(sortableIdTime(auditIdAt(ms) + '0'.repeat(16)), ms);
      }
    });

    /** Everything stored so far, in id (= time) order. */
    function allStored(): AuditRecord[] {
      return [...all].sort((a, b) => (a.audit_id < b.audit_id ? -1 : 1));
    }
  });
});

type AuditStoreQuery = Store['audit']['query'];

function inTime(r: AuditRecord, since: number, until: number): boolean {
  const t = sortableIdTime(r.audit_id)!;
  return t >= since && t < until;
}

function auditRec(o: {
  ms: number;
  agent?: string;
  token?: string;
  action?: string;
  decision?: number;
  reason?: number;
  source?: string;
  seq?: number;
}): AuditRecord {
  return {
    audit_id: newSortableId('audit', o.ms),
    time: new Date(o.ms).toISOString(),
    agent_id: o.agent ?? 'agent_a',
    token_id: o.token ?? 'tok_1',
    action: o.action ?? 'files.read',
    resource: 'file:/tmp/x',
    decision: o.decision ?? 1,
    reason_code: o.reason ?? 0,
    reason: '',
    context: { ip: '10.0.0.1', nested: { n: 1 } },
    policy_ids: ['policy_a'],
    policy_revision: 3,
    source: o.source ?? 'sc_1',
    latency_us: 120,
    seq: o.seq ?? 1,
    prev_hash: '',
    hash: 'ab'.repeat(32),
    approval_id: '',
    allowed: (o.decision ?? 1) === 1,
  };
}
