/**
 * The store conformance suite: every behaviour of `Store`, `OpsStore` and `AuditStore`, run against
 * each real engine (LMDB and PostgreSQL) alike. Behaviours that need several instances on one
 * store (replicas) run where the engine has them. Engine-only details live in lmdb-store.test.ts
 * and postgres-store.test.ts.
 */
import assert from 'node:assert/strict';
import { AuditChain, verifyChain } from '../../../src/audit/chain';
import { newSortableId, sortableIdTime } from '../../../src/common/ids';
import { AuditRecord as AuditCodec } from '../../../src/gen/act/v1/admin';
import { DecisionDetails } from '../../../src/gen/act/v1/decision';
import {
  ChainViolation,
  type Change,
  type CommitEvent,
  type Store,
  type StoreWriter,
} from '../../../src/store';
import { auditIdAt } from '../../../src/store/audit-common';
import { compareKeys } from '../../../src/store/lmdb/key-range';
import { auditRec, ENGINES, eventually, T0, useStores } from './store-engines';

type AuditStoreQuery = Store['audit']['query'];
type AuditRecord = ReturnType<typeof auditRec>;

/** A record as protobuf sees it (what every engine must return, field for field). */
const canon = (r: AuditRecord | undefined) =>
  r === undefined ? undefined : AuditCodec.decode(AuditCodec.encode(r).finish());
const canonAll = (rs: AuditRecord[]) => rs.map((r) => canon(r));

const agentChange = (id: string): Change => ({ kind: { $case: 'agent_deleted', value: id } });

function inTime(r: AuditRecord, since: number, until: number): boolean {
  const t = sortableIdTime(r.audit_id)!;
  return t >= since && t < until;
}

/** A sealed chain of `n` records for `source` (real hashes, as a sidecar makes them). */
function chain(source: string, n: number, opts: { from?: AuditChain; ms?: number } = {}): AuditRecord[] {
  const c = opts.from ?? new AuditChain(source, 0, '');
  const out: AuditRecord[] = [];
  for (let i = 0; i < n; i++) {
    out.push(c.seal(auditRec({ ms: (opts.ms ?? T0) + (c.last.seq + 1) * 10, source })));
  }
  return out;
}

for (const makeEngine of ENGINES) {
  const engine = makeEngine();

  describe(`Store conformance: ${engine.name}`, function () {
    this.timeout(120_000);
    const stores = useStores(engine);
    const fresh = stores.fresh;

    describe('tables', () => {
      let s: Store;
      before(async () => {
        ({ s } = await fresh());
        await s.write(async (w) => {
          for (const k of ['a1', 'a2', 'a3', 'b1', 'b2', 'c1']) w.put('agents', k, { id: k });
        });
      });

      it('gets and scans committed rows (prefix, after, reverse, limit)', async () => {
        await s.read(async (r) => {
          assert.deepEqual(await r.get('agents', 'a2'), { id: 'a2' });
          assert.equal(await r.get('agents', 'zz'), undefined);
          assert.equal(await r.get('policies', 'a2'), undefined, 'tables are separate');
          const keys = async (o: Parameters<typeof r.scan>[1]) =>
            (await r.scan('agents', o)).map((x) => x.key);
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
          assert.deepEqual(await keys({ prefix: 'a', after: '0', limit: 100 }), ['a1', 'a2', 'a3']);
          assert.deepEqual(await keys({ limit: 0 }), []);
        });
      });

      it('orders keys by code point (UTF-8 bytes), astral and non-ASCII included, in every scan', async () => {
        const { s: t } = await fresh();
        // JS `<` (UTF-16 units) puts U+FF5E after U+1F600's surrogates; code point order does not.
        const keys = [
          'z',
          'a',
          'A',
          'é',
          'e\u0301',
          '\u00ff',
          'Ā',
          '\u0800',
          '\ufb01',
          '\uff5e',
          '\u{1f600}',
          '\u{1f600}x',
          '\u{10ffff}',
          'é1',
          'é\u{1f600}',
          '\u{20000}',
          'ab',
          'a b',
        ];
        await t.write(async (w) => {
          for (const k of keys) w.put('index', k, k);
        });
        const byCodePoint = [...keys].sort(compareKeys);
        assert.notDeepEqual(
          byCodePoint,
          [...keys].sort(),
          'the keys tell code point order from UTF-16 order',
        );
        const scanned = async (o: Parameters<StoreWriter['scan']>[1]) =>
          (await t.read((r) => r.scan<string>('index', o))).map((row) => {
            assert.equal(row.value, row.key);
            return row.key;
          });
        assert.deepEqual(await scanned({ limit: 100 }), byCodePoint);
        assert.deepEqual(await scanned({ limit: 100, reverse: true }), [...byCodePoint].reverse());
        assert.deepEqual(
          await scanned({ prefix: 'é', limit: 100 }),
          byCodePoint.filter((k) => k.startsWith('é')),
        );
        assert.deepEqual(await scanned({ prefix: '\u{1f600}', limit: 100 }), ['\u{1f600}', '\u{1f600}x']);
        const mid = '\uff5e';
        assert.deepEqual(
          await scanned({ after: mid, limit: 100 }),
          byCodePoint.filter((k) => compareKeys(k, mid) > 0),
        );
        assert.deepEqual(
          await scanned({ after: '\u{1f600}', reverse: true, limit: 3 }),
          byCodePoint
            .filter((k) => compareKeys(k, '\u{1f600}') < 0)
            .reverse()
            .slice(0, 3),
        );
        // Paging with `after` visits every key once, in order.
        const paged: string[] = [];
        let after: string | undefined;
        for (;;) {
          const page = await scanned({ limit: 4, ...(after !== undefined ? { after } : {}) });
          paged.push(...page);
          if (page.length < 4) break;
          after = page[page.length - 1];
        }
        assert.deepEqual(paged, byCodePoint);
        // Inside a write, buffered keys merge into the same order.
        const { result } = await t.write(async (w) => {
          w.put('index', '\uffff', 'x');
          w.put('index', '\u{10000}', 'x');
          w.del('index', 'é');
          return (await w.scan('index', { limit: 100 })).map((r) => r.key);
        });
        assert.deepEqual(
          result,
          [...byCodePoint.filter((k) => k !== 'é'), '\uffff', '\u{10000}'].sort(compareKeys),
        );
      });

      it('round-trips keys holding NUL and lone surrogates, and JSON values exactly', async () => {
        const { s: t } = await fresh();
        const odd = ['a\u0000b', 'x\ud800y', 'lone\udc00', 'tab\tnew\nline'];
        const value = {
          z: 1,
          a: [1, 'two', null, { n: -0.5 }],
          // (No lone surrogate in values: LMDB's msgpack does not round-trip one; keys do, below.)
          s: 'nul\u0000 astral\u{1f600} é',
          t: true,
          nested: { deep: { er: 'x' } },
          big: 2 ** 52,
        };
        await t.write(async (w) => {
          for (const [i, k] of odd.entries()) w.put('policies', k, { ...value, i });
        });
        for (const [i, k] of odd.entries()) {
          const got = await t.read((r) => r.get<typeof value & { i: number }>('policies', k));
          assert.deepEqual(got, { ...value, i });
          assert.deepEqual(Object.keys(got!), [...Object.keys(value), 'i'], 'key order kept');
        }
        const scanned = await t.read((r) => r.scan('policies', { limit: 10 }));
        assert.deepEqual(
          scanned.map((r) => r.key),
          [...odd].sort(compareKeys),
        );
      });

      it('accepts keys up to the maximum key size (1978 bytes) and commits nothing when one is over', async () => {
        const { s: t } = await fresh();
        const max = 'k'.repeat(1978);
        await t.write(async (w) => w.put('tokens', max, { n: 1 }));
        assert.deepEqual(await t.read((r) => r.get('tokens', max)), { n: 1 });
        const rev = await t.revision();
        await assert.rejects(
          t.write(async (w) => {
            w.put('tokens', 'ok', { n: 1 });
            w.put('tokens', 'é'.repeat(990), { n: 2 }); // 1980 bytes
            w.emit(agentChange('agent_y'));
          }),
          /key size/i,
        );
        assert.equal(await t.revision(), rev);
        assert.equal(await t.read((r) => r.get('tokens', 'ok')), undefined);
        assert.deepEqual(await t.changesSince(rev), []);
        assert.equal((await t.write(async (w) => w.put('tokens', 'ok', {}))).revision, rev + 1);
      });

      it('rejects unknown tables', async () => {
        await assert.rejects(
          s.write(async (w) => w.put('nope' as never, 'k', {})),
          /unknown table/,
        );
        await assert.rejects(
          s.read((r) => r.get('nope' as never, 'k')),
          /unknown table/,
        );
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
          const keys = async (o: Parameters<typeof w.scan>[1]) =>
            (await w.scan('agents', o)).map((x) => x.key);
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
          // Puts after a scan are seen by the next read too.
          w.put('agents', 'a1', { id: 'a1', v: 9 });
          got.a = [...got.a, ...(await w.scan('agents', { prefix: 'a1', limit: 1 }))];
          // Committed state is untouched until the commit.
          assert.equal(await s.read((r) => r.get('agents', 'a3')).then((v) => v !== undefined), true);
          assert.deepEqual(await s.read((r) => r.get('agents', 'a1')), { id: 'a1' });
          return got;
        });
        assert.deepEqual(result.a2, { id: 'a2', v: 2 });
        assert.equal(result.a3, undefined);
        assert.deepEqual(result.all, ['a0', 'a1', 'a2', 'b2', 'b3', 'c1']);
        assert.deepEqual(result.a, [
          { key: 'a0', value: { id: 'a0' } },
          { key: 'a1', value: { id: 'a1' } },
          { key: 'a2', value: { id: 'a2', v: 2 } },
          { key: 'a1', value: { id: 'a1', v: 9 } },
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
        assert.deepEqual(after[1]!.value, { id: 'a1', v: 9 });
      });

      it('read() sees one snapshot across awaits, and says which revision it holds', async () => {
        const { s: t } = await fresh();
        await t.write(async (w) => w.put('keys', 'k', { v: 1 }));
        const seen = await t.read(async (r) => {
          const before = await r.get<{ v: number }>('keys', 'k');
          const rev0 = await r.revision();
          await t.write(async (w) => {
            w.put('keys', 'k', { v: 2 });
            w.put('keys', 'k2', { v: 2 });
          });
          const later = await r.get<{ v: number }>('keys', 'k');
          const scanned = (await r.scan('keys', { limit: 10 })).map((x) => x.key);
          return [before?.v, later?.v, rev0, await r.revision(), scanned];
        });
        assert.deepEqual(seen, [1, 1, 1, 1, ['k']]);
        assert.deepEqual(await t.read((r) => r.get('keys', 'k')), { v: 2 });
        assert.equal(await t.read((r) => r.revision()), 2);
        assert.equal(await t.revision(), 2);
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
            await w.scan('tokens', { limit: 10 }); // buffered writes already sent to the engine
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

      it('bumps the revision once per changing commit, logs changes and notifies', async () => {
        const { s } = await fresh();
        const events: { revision: number; changes: Change[] }[] = [];
        const off = s.onCommit((e) => events.push(e));
        assert.equal(await s.revision(), 0);

        const r1 = await s.write(async (w) => {
          w.put('agents', 'agent_a', { name: 'a' });
          w.emit(agentChange('agent_a'));
          w.emit(agentChange('agent_b'));
          assert.equal(await w.revision(), 0, 'inside a write: the last committed revision');
          return 'ok';
        });
        assert.deepEqual(r1, { result: 'ok', revision: 1 });
        assert.equal(events.length, 1, 'the write resolves after this store’s listeners saw it');

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

      it('keeps notifying other listeners when one throws', async () => {
        const { s } = await fresh();
        const seen: number[] = [];
        s.onCommit(() => {
          throw new Error('faulty listener');
        });
        s.onCommit((e) => seen.push(e.revision));
        const { revision } = await s.write(async (w) => w.emit(agentChange('a')));
        assert.equal(revision, 1);
        assert.deepEqual(seen, [1]);
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

      it('rejects a retention that is not a positive integer', async () => {
        for (const bad of [0, -1, 1.5]) {
          await assert.rejects(fresh({ changeLogRetention: bad }), /changeLogRetention/);
        }
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
        assert.deepEqual(
          results.map((r) => r.revision).sort((a, b) => a - b),
          Array.from({ length: 20 }, (_, i) => i + 1),
        );
        assert.deepEqual(await s.read((r) => r.get('index', 'counter')), { n: 20 });
        assert.equal(await s.revision(), 20);
      });

      it('rejects late writes from a finished transaction', async () => {
        const { s } = await fresh();
        let writer: StoreWriter | undefined;
        await s.write(async (w) => {
          writer = w;
        });
        assert.throws(() => writer!.put('agents', 'late', {}), /finished/);
        assert.throws(() => writer!.del('agents', 'late'), /finished/);
        assert.throws(() => writer!.emit(agentChange('late')), /finished/);
        assert.throws(() => writer!.put('agents', 'x', undefined), /undefined|finished/);
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
        const got = (log as { changes: Change[] }[])[0]!.changes[0]!;
        assert.deepEqual(got, change);
        assert.ok(got.kind?.$case === 'public_key' && got.kind.value.public_key instanceof Uint8Array);
        assert.deepEqual(events[0]![0], change);
      });

      it('keeps storeId, revision and data across close and reopen', async () => {
        const { s, location } = await fresh();
        await s.write(async (w) => {
          w.put('apikeys', 'ak_1', { hash: 'h' });
          w.emit(agentChange('agent_a'));
        });
        await s.audit.append([auditRec({ ms: T0 })]);
        await s.ops.putMany('sidecars', [{ key: 'sc_1', value: { at: 1 } }]);
        const id = s.storeId;
        assert.match(id, /\S{16,}/);
        await s.close();
        await s.close(); // idempotent
        await assert.rejects(
          s.write(async (w) => w.emit(agentChange('late'))),
          /closed/,
        );

        const again = await stores.open(location);
        assert.equal(again.storeId, id);
        assert.equal(await again.revision(), 1);
        assert.deepEqual(await again.read((r) => r.get('apikeys', 'ak_1')), { hash: 'h' });
        assert.deepEqual(await again.changesSince(0), [{ revision: 1, changes: [agentChange('agent_a')] }]);
        assert.equal(await again.audit.count(), 1);
        assert.deepEqual(await again.ops.get('sidecars', 'sc_1'), { at: 1 });
        assert.equal((await again.write(async (w) => w.emit(agentChange('b')))).revision, 2);

        const { s: other } = await fresh();
        assert.notEqual(other.storeId, id, 'each store has its own id');
      });
    });

    if (engine.multiInstance) {
      describe('several instances on one store (replicas)', () => {
        it('share data, revisions and the store id; a write through one is read through another', async () => {
          const { s: a, location } = await fresh();
          const b = await stores.open(location);
          assert.equal(a.storeId, b.storeId);
          await a.write(async (w) => {
            w.put('agents', 'agent_1', { n: 1 });
            w.emit(agentChange('agent_1'));
          });
          assert.deepEqual(await b.read((r) => r.get('agents', 'agent_1')), { n: 1 });
          assert.equal(await b.read((r) => r.revision()), 1);
          // b has not necessarily heard of revision 1 yet: asked, it catches up and answers.
          assert.deepEqual(await b.changesSince(0), [{ revision: 1, changes: [agentChange('agent_1')] }]);
          assert.deepEqual(await b.changesSince(1), []);
          assert.equal(await b.changesSince(2), 'too-old');
          const { revision } = await b.write(async (w) => w.emit(agentChange('agent_2')));
          assert.equal(revision, 2, 'b writes the next revision');
        });

        it('serialize write transactions across instances: read-modify-write loses nothing, revisions have no gaps', async () => {
          const { s: first, location } = await fresh();
          const all = [first, await stores.open(location), await stores.open(location)];
          const seen = all.map((st) => {
            const events: CommitEvent[] = [];
            st.onCommit((e) => events.push(e));
            return events;
          });
          const perInstance = 25;
          const bump = (st: Store, i: number) =>
            st.write(async (w) => {
              const cur = (await w.get<{ n: number }>('index', 'counter'))?.n ?? 0;
              await new Promise((r) => setTimeout(r, Math.random() * 2));
              w.put('index', 'counter', { n: cur + 1 });
              w.emit(agentChange(`w${i}:${cur}`));
              return cur;
            });
          const results = await Promise.all(
            all.flatMap((st, k) => Array.from({ length: perInstance }, (_, i) => bump(st, k * 100 + i))),
          );
          const total = perInstance * all.length;
          assert.deepEqual(
            results.map((r) => r.result).sort((x, y) => x - y),
            Array.from({ length: total }, (_, i) => i),
            'every transaction read the previous one’s write',
          );
          assert.deepEqual(
            results.map((r) => r.revision).sort((x, y) => x - y),
            Array.from({ length: total }, (_, i) => i + 1),
          );
          assert.deepEqual(await first.read((r) => r.get('index', 'counter')), { n: total });
          // Every instance's listeners saw every commit of every instance, once, in revision order.
          for (const [k, events] of seen.entries()) {
            await eventually(() => events.length >= total, `instance ${k} to see ${total} commits`);
            assert.deepEqual(
              events.map((e) => e.revision),
              Array.from({ length: total }, (_, i) => i + 1),
              `instance ${k}`,
            );
            // Revision n carries the change of the transaction that read counter = n - 1.
            for (const e of events) {
              assert.equal(e.changes.length, 1);
              const c = e.changes[0]!.kind;
              assert.ok(c?.$case === 'agent_deleted' && c.value.endsWith(`:${e.revision - 1}`));
            }
          }
        });

        it('a follower reading changesSince never sees a gap or a reordering while instances write concurrently', async () => {
          const { s: first, location } = await fresh();
          const writers = [first, await stores.open(location), await stores.open(location)];
          const follower = await stores.open(location);
          const perWriter = 40;
          const total = perWriter * writers.length;
          let stop = false;
          const followed: number[] = [];
          const follow = (async () => {
            let at = 0;
            while (!stop || at < total) {
              const entries = await follower.changesSince(at, 7);
              assert.notEqual(entries, 'too-old');
              for (const e of entries as { revision: number }[]) {
                assert.equal(e.revision, at + 1, `after ${at} the follower got ${e.revision}`);
                at = e.revision;
                followed.push(at);
              }
              if ((entries as unknown[]).length === 0) await new Promise((r) => setTimeout(r, 1));
            }
          })();
          await Promise.all(
            writers.map(async (w, k) => {
              for (let i = 0; i < perWriter; i++) {
                await w.write(async (tx) => {
                  tx.put('tokens', `t${k}_${i}`, { k, i });
                  tx.emit(agentChange(`w${k}_${i}`));
                });
              }
            }),
          );
          stop = true;
          await follow;
          assert.deepEqual(
            followed,
            Array.from({ length: total }, (_, i) => i + 1),
          );
          const log = (await follower.changesSince(0, total + 10)) as { changes: Change[] }[];
          const names = log.map((e) => (e.changes[0]!.kind as { value: string }).value).sort();
          const expected = writers
            .flatMap((_, k) => Array.from({ length: perWriter }, (__, i) => `w${k}_${i}`))
            .sort();
          assert.deepEqual(names, expected, 'every commit logged once');
        });

        it('onCommit on another instance: every commit, once, in order; a no-op write bumps nothing anywhere', async () => {
          const { s: a, location } = await fresh();
          const b = await stores.open(location);
          const seenB: CommitEvent[] = [];
          b.onCommit((e) => seenB.push(e));
          for (let i = 1; i <= 5; i++) await a.write(async (w) => w.emit(agentChange(`agent_${i}`)));
          await a.write(async (w) => w.get('agents', 'x'));
          await eventually(() => seenB.length >= 5, 'b to hear 5 commits');
          await new Promise((r) => setTimeout(r, 300)); // a few polls: nothing more may arrive
          assert.deepEqual(
            seenB.map((e) => [e.revision, (e.changes[0]!.kind as { value: string }).value]),
            [1, 2, 3, 4, 5].map((i) => [i, `agent_${i}`]),
          );
          assert.equal(await b.revision(), 5);
        });
      });
    }

    describe('ops tables', () => {
      let s: Store;
      before(async () => {
        ({ s } = await fresh());
      });

      it('puts, gets, scans in key order and deletes; never bumps the revision or notifies', async () => {
        const events: number[] = [];
        s.onCommit((e) => events.push(e.revision));
        const rev = await s.revision();
        await s.ops.putMany('sidecars', [
          { key: 'sc_b', value: { n: 2 } },
          { key: 'sc_a', value: { n: 1 } },
          { key: 'sc_é', value: { n: 3 } },
          { key: 'sc_\u{1f600}', value: { n: 4 } },
          { key: 'sc_c', value: { n: 0 } },
          { key: 'sc_c', value: { n: 5 } }, // last writer wins within a batch
        ]);
        await s.ops.putMany('budgets', [{ key: 'sc_a', value: { other: true } }]);
        assert.deepEqual(await s.ops.get('sidecars', 'sc_c'), { n: 5 });
        assert.equal(await s.ops.get('sidecars', 'nope'), undefined);
        const keys = async (o: Parameters<Store['ops']['scan']>[1]) =>
          (await s.ops.scan('sidecars', o)).map((r) => r.key);
        const all = ['sc_a', 'sc_b', 'sc_c', 'sc_é', 'sc_\u{1f600}'];
        assert.deepEqual(await keys({ limit: 100 }), all);
        assert.deepEqual(await keys({ limit: 100, reverse: true }), [...all].reverse());
        assert.deepEqual(await keys({ prefix: 'sc_', after: 'sc_b', limit: 2 }), ['sc_c', 'sc_é']);
        assert.deepEqual(await keys({ limit: 0 }), []);
        await s.ops.delete('sidecars', ['sc_b', 'missing', 'sc_b']);
        await s.ops.delete('sidecars', []);
        await s.ops.putMany('sidecars', []);
        assert.deepEqual(await keys({ limit: 100 }), ['sc_a', 'sc_c', 'sc_é', 'sc_\u{1f600}']);
        assert.deepEqual(await s.ops.get('budgets', 'sc_a'), { other: true }, 'tables are separate');
        assert.equal(await s.revision(), rev);
        assert.deepEqual(events, []);
        assert.deepEqual(await s.read((r) => r.scan('agents', { limit: 10 })), []);
      });

      it('update is a read-modify-write returning its result; undefined deletes the row', async () => {
        const r1 = await s.ops.update<{ n: number }, string>('budgets', 'b1', (cur) => ({
          value: { n: (cur?.n ?? 0) + 1 },
          result: cur === undefined ? 'created' : 'updated',
        }));
        const r2 = await s.ops.update<{ n: number }, string>('budgets', 'b1', (cur) => ({
          value: { n: (cur?.n ?? 0) + 1 },
          result: cur === undefined ? 'created' : 'updated',
        }));
        assert.deepEqual([r1, r2], ['created', 'updated']);
        assert.deepEqual(await s.ops.get('budgets', 'b1'), { n: 2 });
        const r3 = await s.ops.update<{ n: number }, number>('budgets', 'b1', (cur) => ({
          value: undefined,
          result: cur!.n,
        }));
        assert.equal(r3, 2);
        assert.equal(await s.ops.get('budgets', 'b1'), undefined);
        // Deleting a missing row is fine.
        assert.equal(await s.ops.update('budgets', 'b1', () => ({ value: undefined, result: 'x' })), 'x');
      });

      it('update changes nothing when fn throws', async () => {
        await s.ops.putMany('outbox', [{ key: 'o1', value: { v: 1 } }]);
        await assert.rejects(
          s.ops.update('outbox', 'o1', () => {
            throw new Error('nope');
          }),
          /nope/,
        );
        assert.deepEqual(await s.ops.get('outbox', 'o1'), { v: 1 });
        // And keeps working.
        await s.ops.update<{ v: number }, void>('outbox', 'o1', (c) => ({
          value: { v: c!.v + 1 },
          result: undefined,
        }));
        assert.deepEqual(await s.ops.get('outbox', 'o1'), { v: 2 });
      });

      it('rejects unknown ops tables and over-long keys, changing nothing', async () => {
        await assert.rejects(async () => s.ops.get('nope' as never, 'k'), /unknown ops table/);
        await assert.rejects(
          async () => s.ops.update('nope' as never, 'k', () => ({ value: 1, result: 1 })),
          /unknown ops table/,
        );
        await assert.rejects(
          async () => s.ops.putMany('outbox', [{ key: 'é'.repeat(990), value: 1 }]),
          /key size/i,
        );
        assert.equal(await s.ops.get('outbox', 'é'.repeat(990)), undefined);
      });

      it('serializes concurrent updates of one row: no increment is lost', async () => {
        const n = 100;
        const results = await Promise.all(
          Array.from({ length: n }, () =>
            s.ops.update<{ n: number }, number>('budgets', 'counter', (cur) => {
              const next = (cur?.n ?? 0) + 1;
              return { value: { n: next }, result: next };
            }),
          ),
        );
        assert.deepEqual(await s.ops.get('budgets', 'counter'), { n });
        assert.deepEqual(
          results.sort((a, b) => a - b),
          Array.from({ length: n }, (_, i) => i + 1),
        );
      });

      if (engine.multiInstance) {
        it('serializes updates of one row across instances: three instances × many increments end at the sum', async () => {
          const { s: a, location } = await fresh();
          const all = [a, await stores.open(location), await stores.open(location)];
          const each = 120;
          const results = await Promise.all(
            all.flatMap((st) =>
              Array.from({ length: each }, (_, i) =>
                st.ops.update<{ n: number; by: number[] }, number>('budgets', 'shared', (cur) => {
                  const next = (cur?.n ?? 0) + 1;
                  return { value: { n: next, by: [...(cur?.by ?? []).slice(-3), i] }, result: next };
                }),
              ),
            ),
          );
          assert.equal((await a.ops.get<{ n: number }>('budgets', 'shared'))!.n, each * all.length);
          assert.deepEqual(
            results.sort((x, y) => x - y),
            Array.from({ length: each * all.length }, (_, i) => i + 1),
            'each update saw the one before it',
          );
        });
      }
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

      /** Everything stored in this suite's audit store so far, in id (= time) order. */
      const allStored = () => [...all].sort((a, b) => (a.audit_id < b.audit_id ? -1 : 1));

      it('appends idempotently and counts only new records', async () => {
        assert.equal(await s.audit.count(), 300);
        assert.equal(await s.audit.append(all.slice(0, 10)), 0);
        const extra = auditRec({ ms: T0 - 5000, agent: 'agent_z', source: 'sc_other', seq: 1 });
        assert.equal(await s.audit.append([extra, extra, all[3]!]), 1);
        all.push(extra); // index 300; the queries below expect it
        assert.equal(await s.audit.count(), 301);
        assert.equal(await s.audit.append([]), 0);
        assert.deepEqual(
          canonAll((await s.audit.query({ agent_id: 'agent_z' }, '', 10)).records),
          canonAll([extra]),
        );
      });

      it('refuses to append a record without a usable audit id or source, storing none of the batch', async () => {
        const ok = auditRec({ ms: T0 + 7_777_000 });
        for (const bad of [
          { ...auditRec({ ms: T0 }), audit_id: '' },
          { ...auditRec({ ms: T0 }), audit_id: 'audit_\u0000x' },
          { ...auditRec({ ms: T0 }), audit_id: `audit_${'x'.repeat(300)}` },
          { ...auditRec({ ms: T0 }), source: 'sc\ud800' },
        ]) {
          await assert.rejects(s.audit.append([ok, bad]), /audit_id|source/);
        }
        assert.equal(await s.audit.count(), 301);
        assert.deepEqual((await s.audit.query({ sinceMs: T0 + 7_777_000 }, '', 10)).records, []);
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
        ['since only', { sinceMs: T0 + 250_000 }, (r) => inTime(r, T0 + 250_000, Infinity)],
        ['until only', { untilMs: T0 + 20_000 }, (r) => inTime(r, 0, T0 + 20_000)],
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
        [
          'action + decision + reason',
          { action: 'files.read', decision: 3, reason_code: 2 },
          (r) => r.action === 'files.read' && r.decision === 3 && r.reason_code === 2,
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

      it('returns whole records from query and export', async () => {
        const page = await s.audit.query({ token_id: 'tok_2' }, '', 3);
        const want = allStored()
          .filter((r) => r.token_id === 'tok_2')
          .reverse()
          .slice(0, 3);
        assert.deepEqual(canonAll(page.records), canonAll(want));
      });

      it('returns a cursor when the scan budget is spent', async () => {
        // 37 records examined per call, 1 in ~100 matches: the first page is empty but continues.
        const page = await s.audit.query({ reason_code: 4, decision: 3, action: 'files.write' }, '', 5);
        assert.equal(page.records.length <= 5, true);
        assert.notEqual(page.nextCursor, '');
        // A limit above the budget is cut to the budget, with a cursor.
        const big = await s.audit.query({}, '', 1000);
        assert.equal(big.records.length, 37);
        assert.notEqual(big.nextCursor, '');
      });

      it('ends paging exactly when the last page is full', async () => {
        const n = allStored().filter((r) => r.agent_id === 'agent_z').length;
        const page = await s.audit.query({ agent_id: 'agent_z' }, '', n);
        assert.equal(page.records.length, n);
        assert.equal(page.nextCursor, '');
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
          allStored()
            .filter((r) => r.agent_id === 'agent_c' && inTime(r, T0 + 30_000, Infinity))
            .map((r) => r.audit_id),
        );
        const both: string[] = [];
        for await (const r of s.audit.export({ action: 'files.write', decision: 2 })) both.push(r.audit_id);
        assert.deepEqual(
          both,
          allStored()
            .filter((r) => r.action === 'files.write' && r.decision === 2)
            .map((r) => r.audit_id),
        );
      });

      it('tracks the highest-seq record per source', async () => {
        assert.deepEqual(canon(await s.audit.lastOfSource('sc_even')), canon(all[298]));
        assert.deepEqual(canon(await s.audit.lastOfSource('sc_odd')), canon(all[299]));
        assert.equal(await s.audit.lastOfSource('sc_unknown'), undefined);
      });

      it('notifies onAppend listeners with new records only', async () => {
        const seen: AuditRecord[][] = [];
        const off = s.audit.onAppend((rs) => seen.push(rs));
        s.audit.onAppend(() => {
          throw new Error('faulty follower');
        });
        const r1 = auditRec({ ms: T0 + 1_000_000, source: 'sc_even', seq: 1000 });
        assert.equal(await s.audit.append([r1, all[0]!]), 1);
        assert.equal(await s.audit.append([all[1]!]), 0);
        assert.equal(seen.length, 1, 'the append resolves after this store’s followers heard it');
        off();
        await s.audit.append([auditRec({ ms: T0 + 1_000_001 })]);
        assert.deepEqual(seen.map(canonAll), [canonAll([r1])]);
        assert.deepEqual(canon(await s.audit.lastOfSource('sc_even')), canon(r1));
        all.push(r1);
      });

      it('keeps the chain head per source across out-of-order batches and retries', async () => {
        const { s: st } = await fresh();
        const a = [1, 2, 3, 4].map((seq) => auditRec({ ms: T0 + seq, source: 'sc_a', seq }));
        const b = [1, 2].map((seq) => auditRec({ ms: T0 + 10 + seq, source: 'sc_b', seq }));
        // One batch, sources interleaved, the highest records first.
        await st.audit.append([a[3]!, b[1]!, a[0]!, b[0]!, a[1]!]);
        assert.deepEqual(canon(await st.audit.lastOfSource('sc_a')), canon(a[3]));
        assert.deepEqual(canon(await st.audit.lastOfSource('sc_b')), canon(b[1]));
        // A later batch holding only lower seqs (a retry) does not move the head back.
        await st.audit.append([a[2]!, a[1]!]);
        assert.deepEqual(canon(await st.audit.lastOfSource('sc_a')), canon(a[3]));
        assert.equal(await st.audit.count(), 6);
      });

      // (A lone surrogate has no protobuf (UTF-8) form: a record holding one is stored with U+FFFD.)
      it('stores text PostgreSQL columns cannot hold (NUL, long values) and finds it exactly', async () => {
        const { s: st } = await fresh();
        const odd = {
          agent: 'agent\u0000x',
          token: 'tok\u0000\u0000',
          action: 'a'.repeat(600) + '1',
          context: { 'k\u0000': 'v\u0000', astral: '\u{1f600}', nested: { '\u{1f600}': ['x\u0000'] } },
        };
        const r1 = auditRec({
          ms: T0 + 1,
          agent: odd.agent,
          token: odd.token,
          action: odd.action,
          context: odd.context,
        });
        // Look-alikes: same text once NUL/lone surrogates are replaced, or the same first 600 characters.
        const r2 = auditRec({
          ms: T0 + 2,
          agent: 'agent\ufffdx',
          token: 'tok\ufffd\ufffd',
          action: 'a'.repeat(600) + '2',
        });
        await st.audit.append([r1, r2]);
        const only = async (f: Parameters<AuditStoreQuery>[0]) =>
          (await st.audit.query(f, '', 10)).records.map((r) => r.audit_id);
        assert.deepEqual(await only({ agent_id: odd.agent }), [r1.audit_id]);
        assert.deepEqual(await only({ agent_id: 'agent\ufffdx' }), [r2.audit_id]);
        assert.deepEqual(await only({ token_id: odd.token }), [r1.audit_id]);
        assert.deepEqual(await only({ action: odd.action }), [r1.audit_id]);
        assert.deepEqual(await only({ action: r2.action }), [r2.audit_id]);
        const exported: AuditRecord[] = [];
        for await (const r of st.audit.export({ agent_id: odd.agent })) exported.push(r);
        assert.deepEqual(canonAll(exported), canonAll([r1]));
        assert.deepEqual(exported[0]!.context, odd.context);
      });

      it('round-trips sealed records exactly: the stored chain verifies', async () => {
        const { s: st } = await fresh();
        const c = new AuditChain('sc_sealed', 0, '');
        const recs: AuditRecord[] = [];
        for (let i = 0; i < 50; i++) {
          const r = auditRec({
            ms: T0 + i,
            context: { z: i, a: 'first-key-last', list: [1, { x: null }], é: true, n: -1.25 },
          });
          r.details = DecisionDetails.fromPartial({
            policy_id: 'policy_a',
            rule: `rule ${i}`,
            retry_after_ms: i,
          });
          recs.push(c.seal(r));
        }
        const res = await st.audit.ingest(recs);
        assert.deepEqual(res, { stored: 50, duplicates: 0, gaps: 0, restarts: 0 });
        const back: AuditRecord[] = [];
        for await (const r of st.audit.export({})) back.push(r);
        assert.deepEqual(verifyChain(back), []);
        for (const [i, r] of back.entries()) {
          assert.deepEqual(
            Buffer.from(AuditCodec.encode(r).finish()),
            Buffer.from(AuditCodec.encode(recs[i]!).finish()),
          );
          assert.deepEqual(Object.keys(r.context!), ['z', 'a', 'list', 'é', 'n'], 'context key order kept');
        }
        const head = await st.audit.lastOfSource('sc_sealed');
        assert.deepEqual(verifyChain([head!], { seq: 49, hash: recs[48]!.hash }), []);
      });

      it('exports 20k records in order, in chunks', async () => {
        const { s: big } = await fresh();
        const recs = Array.from({ length: 20_000 }, (_, i) => auditRec({ ms: T0 + i, seq: i }));
        for (let i = 0; i < recs.length; i += 5000) await big.audit.append(recs.slice(i, i + 5000));
        let i = 0;
        for await (const r of big.audit.export({})) {
          assert.equal(r.audit_id, recs[i]!.audit_id);
          i++;
        }
        assert.equal(i, 20_000);
        assert.equal(await big.audit.count(), 20_000);
      });

      it('exports in bounded memory', async () => {
        const { s: big } = await fresh();
        const n = 40_000;
        const pad = 'x'.repeat(1000);
        for (let i = 0; i < n; i += 2000) {
          await big.audit.append(
            Array.from({ length: Math.min(2000, n - i) }, (_, j) =>
              auditRec({ ms: T0 + i + j, seq: i + j, context: { pad, i: i + j } }),
            ),
          );
        }
        const gc = exposeGc();
        gc();
        const base = process.memoryUsage().heapUsed;
        let peak = 0;
        let seen = 0;
        for await (const r of big.audit.export({})) {
          if (r.context!.i !== seen) throw new Error(`record ${seen} out of order`);
          seen++;
          if (seen % 2500 === 0) {
            gc();
            peak = Math.max(peak, process.memoryUsage().heapUsed - base);
          }
        }
        assert.equal(seen, n);
        // The trail is ~40 MB of context alone (~80 MB as decoded records and their bytes); holding it,
        // or a large part of it, would show here. A chunk of 1000 records is ~3 MB.
        assert.ok(peak < 16 * 1024 * 1024, `export held ${(peak / 1048576).toFixed(1)} MB`);
      });

      it('computes time bounds like common/ids', () => {
        for (const ms of [0, 1, T0, T0 + 123_456, 2 ** 40]) {
          const id = newSortableId('audit', ms);
          assert.ok(id.startsWith(auditIdAt(ms)));
          assert.equal(sortableIdTime(auditIdAt(ms) + '0'.repeat(16)), ms);
        }
      });

      describe('prune', () => {
        it('deletes records before the time, keeps the rest and the chain heads, counts exactly', async () => {
          const { s: st } = await fresh();
          const day = 86_400_000;
          // Records over ~4 months, plus one without a time in its id.
          const recs = Array.from({ length: 120 }, (_, i) =>
            auditRec({ ms: T0 + i * day, source: 'sc_p', seq: i + 1, agent: `agent_${i % 4}` }),
          );
          const timeless = { ...auditRec({ ms: T0, source: 'sc_t' }), audit_id: 'audit_zz' };
          await st.audit.append([...recs, timeless]);
          assert.equal(await st.audit.count(), 121);
          const cut = T0 + 70 * day + 1;
          const removed = await st.audit.prune(cut);
          const kept = recs.filter((r) => sortableIdTime(r.audit_id)! >= cut);
          assert.equal(removed, 120 - kept.length);
          assert.equal(await st.audit.count(), 121 - removed);
          const left: string[] = [];
          for await (const r of st.audit.export({})) left.push(r.audit_id);
          // 'audit_zz' sorts after every real id: it is not before the cut in key order, so it stays.
          assert.deepEqual(left, [...kept.map((r) => r.audit_id), 'audit_zz']);
          const page = await st.audit.query({ agent_id: 'agent_1' }, '', 100);
          assert.deepEqual(
            page.records.map((r) => r.audit_id),
            kept
              .filter((r) => r.agent_id === 'agent_1')
              .map((r) => r.audit_id)
              .reverse(),
          );
          assert.equal(await st.audit.prune(cut), 0, 'idempotent');
          assert.deepEqual(canon(await st.audit.lastOfSource('sc_p')), canon(recs[119]));
          // Everything goes; the heads stay, so the chain goes on from where it was.
          assert.equal(await st.audit.prune(T0 + 1000 * day), kept.length);
          assert.equal(await st.audit.count(), 1);
          assert.equal(await st.audit.lastOfSource('sc_p'), undefined, 'the head record is gone');
          const c = new AuditChain('sc_chain', 0, '');
          const first = [c.seal(auditRec({ ms: T0 + 1 })), c.seal(auditRec({ ms: T0 + 2 }))];
          await st.audit.ingest(first);
          await st.audit.prune(T0 + 1000 * day);
          const next = c.seal(auditRec({ ms: T0 + 1001 * day }));
          assert.deepEqual(await st.audit.ingest([next]), { stored: 1, duplicates: 0, gaps: 0, restarts: 0 });
          await st.audit.prune(T0 + 1002 * day);
          const fork = new AuditChain('sc_chain', 3, 'ff'.repeat(32)).seal(auditRec({ ms: T0 + 1003 * day }));
          await assert.rejects(st.audit.ingest([fork]), /prev_hash does not link to seq 3/);
        });
      });

      describe('ingest (chain rules)', () => {
        let st: Store;
        beforeEach(async () => {
          ({ s: st } = await fresh());
        });

        it('stores a fresh chain and moves the head to its last record', async () => {
          const recs = chain('sc_1', 5);
          assert.deepEqual(await st.audit.ingest(recs), { stored: 5, duplicates: 0, gaps: 0, restarts: 0 });
          assert.deepEqual(canon(await st.audit.lastOfSource('sc_1')), canon(recs[4]));
          assert.equal(await st.audit.count(), 5);
          assert.deepEqual(await st.audit.ingest([]), { stored: 0, duplicates: 0, gaps: 0, restarts: 0 });
        });

        it('is idempotent: a batch sent again is all duplicates, stored once, not announced again', async () => {
          const recs = chain('sc_1', 5);
          await st.audit.ingest(recs);
          const seen: AuditRecord[][] = [];
          st.audit.onAppend((rs) => seen.push(rs));
          assert.deepEqual(await st.audit.ingest(recs), { stored: 0, duplicates: 5, gaps: 0, restarts: 0 });
          assert.deepEqual(await st.audit.ingest(recs.slice(1, 3)), {
            stored: 0,
            duplicates: 2,
            gaps: 0,
            restarts: 0,
          });
          assert.equal(await st.audit.count(), 5);
          assert.deepEqual(seen, []);
          // A batch of old and new: the old are duplicates, the new link on.
          const c = new AuditChain('sc_1', 5, recs[4]!.hash);
          const more = [recs[4]!, c.seal(auditRec({ ms: T0 + 100 })), c.seal(auditRec({ ms: T0 + 101 }))];
          assert.deepEqual(await st.audit.ingest(more), { stored: 2, duplicates: 1, gaps: 0, restarts: 0 });
          assert.deepEqual(seen.map(canonAll), [canonAll(more.slice(1))]);
        });

        it('links each record to the head: seq n+1 with another prev_hash is refused', async () => {
          const recs = chain('sc_1', 3);
          await st.audit.ingest(recs);
          const c = new AuditChain('sc_1', 3, 'ee'.repeat(32)); // a fork: wrong previous hash
          await assert.rejects(st.audit.ingest([c.seal(auditRec({ ms: T0 + 50 }))]), (err: unknown) => {
            assert.ok(err instanceof ChainViolation);
            assert.match(err.message, /prev_hash does not link to seq 3/);
            return true;
          });
          assert.equal(await st.audit.count(), 3);
        });

        it('refuses a record whose hash is not its own', async () => {
          const [r] = chain('sc_1', 1);
          await assert.rejects(st.audit.ingest([{ ...r!, action: 'files.delete' }]), /hash does not match/);
          assert.equal(await st.audit.count(), 0);
        });

        it('refuses another record under a stored audit id', async () => {
          const recs = chain('sc_1', 2);
          await st.audit.ingest(recs);
          const other = reseal({ ...recs[1]!, action: 'files.delete' });
          await assert.rejects(st.audit.ingest([other]), /another record with this audit_id is stored/);
          // Also from another source: audit ids are unique across sources.
          const elsewhere = reseal({ ...recs[1]!, source: 'sc_2', seq: 1, prev_hash: '' });
          await assert.rejects(st.audit.ingest([elsewhere]), /another record with this audit_id is stored/);
          assert.equal(await st.audit.count(), 2);
        });

        it('refuses seq at or before the head that is not a stored record', async () => {
          const recs = chain('sc_1', 4);
          await st.audit.ingest(recs);
          const c = new AuditChain('sc_1', 1, recs[0]!.hash); // replays seq 2 with a new id
          await assert.rejects(
            st.audit.ingest([c.seal(auditRec({ ms: T0 + 77 }))]),
            /at or before the chain head/,
          );
          assert.equal(await st.audit.count(), 4);
        });

        it('accepts a gap (records lost upstream) and counts it', async () => {
          const recs = chain('sc_1', 3);
          await st.audit.ingest(recs);
          const c = new AuditChain('sc_1', 9, 'dd'.repeat(32));
          const after = [c.seal(auditRec({ ms: T0 + 500 })), c.seal(auditRec({ ms: T0 + 501 }))];
          assert.deepEqual(await st.audit.ingest(after), { stored: 2, duplicates: 0, gaps: 1, restarts: 0 });
          assert.deepEqual(canon(await st.audit.lastOfSource('sc_1')), canon(after[1]));
        });

        it('accepts a restart (seq 1, no prev_hash) under a known source and counts it', async () => {
          await st.audit.ingest(chain('sc_1', 3));
          const again = chain('sc_1', 2, { ms: T0 + 9000 });
          assert.deepEqual(await st.audit.ingest(again), { stored: 2, duplicates: 0, gaps: 0, restarts: 1 });
          assert.deepEqual(canon(await st.audit.lastOfSource('sc_1')), canon(again[1]));
          // A first chain is not a restart.
          assert.deepEqual((await st.audit.ingest(chain('sc_new', 1))).restarts, 0);
        });

        it('requires successive records of a batch to link, and stores nothing of a refused batch', async () => {
          const seen: AuditRecord[][] = [];
          st.audit.onAppend((rs) => seen.push(rs));
          const good = chain('sc_1', 3);
          const other = chain('sc_2', 2);
          const broken = reseal({ ...good[2]!, prev_hash: 'cc'.repeat(32) });
          await assert.rejects(
            st.audit.ingest([other[0]!, good[0]!, good[1]!, broken, other[1]!]),
            ChainViolation,
          );
          assert.equal(await st.audit.count(), 0);
          assert.equal(await st.audit.lastOfSource('sc_1'), undefined);
          assert.equal(await st.audit.lastOfSource('sc_2'), undefined);
          assert.deepEqual(seen, []);
          // Interleaved sources that do link are fine.
          assert.deepEqual(await st.audit.ingest([other[0]!, good[0]!, good[1]!, other[1]!, good[2]!]), {
            stored: 5,
            duplicates: 0,
            gaps: 0,
            restarts: 0,
          });
          assert.equal(seen.length, 1);
        });

        it('refuses records without an audit id, a source or a positive integer seq', async () => {
          const [r] = chain('sc_1', 1);
          for (const [bad, why] of [
            [{ ...r!, audit_id: '' }, /audit_id/],
            [{ ...r!, audit_id: 'audit_\u0000nul' }, /audit_id/],
            [{ ...r!, audit_id: 'audit_\ud800' }, /audit_id/],
            [{ ...r!, audit_id: 'a'.repeat(257) }, /audit_id/],
            [{ ...r!, source: '' }, /source/],
            [{ ...r!, source: 'sc\u0000' }, /source/],
            [{ ...r!, seq: 0 }, /seq/],
            [{ ...r!, seq: 1.5 }, /seq/],
          ] as const) {
            // Resealed where it can be, so only the rule under test is broken (seq 1.5 cannot be encoded).
            const rec = Number.isInteger(bad.seq) ? reseal(bad) : bad;
            await assert.rejects(st.audit.ingest([rec]), (err: unknown) => {
              assert.ok(err instanceof ChainViolation, String(err));
              assert.match(err.message, why);
              return true;
            });
          }
          assert.equal(await st.audit.count(), 0);
        });

        if (engine.multiInstance) {
          it('serializes ingests of one source across instances: of two forks of a chain, exactly one is stored', async () => {
            const { location } = await fresh();
            const a = await stores.open(location);
            const b = await stores.open(location);
            const base = chain('sc_fork', 2);
            await a.audit.ingest(base);
            for (let round = 0; round < 15; round++) {
              const head = (await a.audit.lastOfSource('sc_fork'))!;
              const forks = [0, 1].map((k) => {
                const c = new AuditChain('sc_fork', head.seq, head.hash);
                return [0, 1, 2].map((i) =>
                  c.seal(auditRec({ ms: T0 + round * 100 + k * 10 + i, action: `fork${k}` })),
                );
              });
              const outcomes = await Promise.allSettled([
                a.audit.ingest(forks[0]!),
                b.audit.ingest(forks[1]!),
              ]);
              const ok = outcomes.filter((o) => o.status === 'fulfilled');
              assert.equal(ok.length, 1, `round ${round}: ${outcomes.map((o) => o.status).join(', ')}`);
              const failed = outcomes.find((o) => o.status === 'rejected') as PromiseRejectedResult;
              assert.ok(failed.reason instanceof ChainViolation, String(failed.reason));
            }
            const stored: AuditRecord[] = [];
            for await (const r of a.audit.export({})) stored.push(r);
            assert.equal(stored.length, 2 + 15 * 3);
            assert.deepEqual(verifyChain(stored.sort((x, y) => x.seq - y.seq)), [], 'one unbroken chain');
          });

          it('stores a batch sent to two instances at once exactly once (a sidecar retrying on another replica)', async () => {
            const { location } = await fresh();
            const a = await stores.open(location);
            const b = await stores.open(location);
            const c = new AuditChain('sc_dup', 0, '');
            let total = { a: 0, b: 0, dup: 0 };
            for (let i = 0; i < 10; i++) {
              const batch = Array.from({ length: 20 }, (_, j) => c.seal(auditRec({ ms: T0 + i * 100 + j })));
              const [ra, rb] = await Promise.all([a.audit.ingest(batch), b.audit.ingest(batch)]);
              assert.equal(ra.stored + rb.stored, 20);
              total = {
                a: total.a + ra.stored,
                b: total.b + rb.stored,
                dup: total.dup + ra.duplicates + rb.duplicates,
              };
            }
            assert.equal(total.a + total.b, 200);
            assert.equal(total.dup, 200);
            assert.equal(await b.audit.count(), 200);
          });
        }
      });

      if (engine.multiInstance) {
        it('appends a batch sent to several instances at once exactly once, counting each record once', async () => {
          const { s: a, location } = await fresh();
          const all3 = [a, await stores.open(location), await stores.open(location)];
          let stored = 0;
          for (let i = 0; i < 10; i++) {
            const batch = Array.from({ length: 30 }, (_, j) =>
              auditRec({ ms: T0 + i * 100 + j, source: `sc_${j % 3}` }),
            );
            const counts = await Promise.all(
              all3.map((st, k) => st.audit.append(k === 1 ? [...batch].reverse() : batch)),
            );
            assert.equal(
              counts.reduce((x, y) => x + y, 0),
              30,
              `batch ${i}: ${counts.join(' + ')}`,
            );
            stored += 30;
          }
          for (const st of all3) assert.equal(await st.audit.count(), stored);
        });

        it('onAppend fires on every instance for records stored through any, each once', async () => {
          const { s: a, location } = await fresh();
          const all3 = [a, await stores.open(location), await stores.open(location)];
          const seen = all3.map((st) => {
            const ids: string[] = [];
            st.audit.onAppend((rs) => ids.push(...rs.map((r) => r.audit_id)));
            return ids;
          });
          const expected: string[] = [];
          await Promise.all(
            all3.map(async (st, k) => {
              const c = new AuditChain(`sc_${k}`, 0, '');
              for (let i = 0; i < 10; i++) {
                const batch = Array.from({ length: 5 }, (_, j) =>
                  c.seal(auditRec({ ms: T0 + k * 1000 + i * 10 + j })),
                );
                expected.push(...batch.map((r) => r.audit_id));
                if (i % 2 === 0) await st.audit.ingest(batch);
                else await st.audit.append([...batch, ...batch.slice(0, 2)]);
              }
            }),
          );
          for (const [k, ids] of seen.entries()) {
            await eventually(() => ids.length >= expected.length, `instance ${k} to hear every record`);
            await new Promise((r) => setTimeout(r, 250));
            assert.deepEqual([...ids].sort(), [...expected].sort(), `instance ${k}: each record once`);
          }
          assert.equal(await all3[2]!.audit.count(), expected.length);
        });
      }
    });
  });
}

/** The record with its hash recomputed (for records edited to break one rule and not another). */
function reseal(r: AuditRecord): AuditRecord {
  return { ...r, hash: resealHash(r) };
}

function resealHash(r: AuditRecord): string {
  const c = new AuditChain(r.source, r.seq - 1, r.prev_hash);
  const copy = { ...r };
  c.seal(copy);
  return copy.hash;
}

/** `global.gc`, exposed at run time (mocha does not start node with --expose-gc). */
function exposeGc(): () => void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const v8 = require('node:v8') as typeof import('node:v8');
  v8.setFlagsFromString('--expose-gc');
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const vm = require('node:vm') as typeof import('node:vm');
  return vm.runInNewContext('gc') as () => void;
}
