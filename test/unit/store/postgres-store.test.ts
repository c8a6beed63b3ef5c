/**
 * PostgreSQL-only details of the store: migrations under concurrent opens, gap-free revisions as
 * seen by a raw SQL reader, the change feed surviving a lost LISTEN connection and a server restart,
 * audit partitions, and independence from the database's collation. Everything the Store contract
 * says is in conformance.test.ts, run against LMDB and PostgreSQL alike.
 */
import assert from 'node:assert/strict';
import pg from 'pg';
import { ActError } from '../../../src/common/errors';
import { sortableIdTime } from '../../../src/common/ids';
import type { Change, CommitEvent, Store } from '../../../src/store';
import { compareKeys } from '../../../src/store/lmdb/key-range';
import { migrate, MIGRATIONS } from '../../../src/store/postgres/migrations';
import { openPostgresStore, type PostgresStoreConfig } from '../../../src/store/postgres/postgres-store';
import {
  sharedPostgresCluster,
  startPostgresCluster,
  testDatabaseUrl,
  type PostgresCluster,
} from '../../support/postgres';
import { auditRec, eventually, T0 } from './store-engines';

const agentChange = (id: string): Change => ({ kind: { $case: 'agent_deleted', value: id } });

describe('PostgreSQL store (engine-specific)', function () {
  this.timeout(120_000);
  const open = new Set<Store>();
  const opened = async (config: PostgresStoreConfig) => {
    const s = await openPostgresStore(config);
    open.add(s);
    return s;
  };
  const sql = async <T extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []) => {
    const c = new pg.Client({ connectionString: url });
    await c.connect();
    try {
      return (await c.query<T>(text, values)).rows;
    } finally {
      await c.end();
    }
  };
  afterEach(async () => {
    await Promise.all([...open].map((s) => s.close()));
    open.clear();
  });

  describe('migrations', () => {
    it('applies each migration exactly once when several replicas open a new database at once', async () => {
      const url = await testDatabaseUrl();
      const stores = await Promise.all(Array.from({ length: 6 }, () => opened({ databaseUrl: url })));
      assert.equal(new Set(stores.map((s) => s.storeId)).size, 1, 'one store id');
      const rows = await sql<{ version: number }>(
        url,
        'SELECT version FROM act_schema_migrations ORDER BY version',
      );
      assert.deepEqual(
        rows.map((r) => r.version),
        MIGRATIONS.map((m) => m.version),
      );
      // And again on an up-to-date database: nothing to apply.
      const pool = new pg.Pool({ connectionString: url });
      try {
        assert.deepEqual(await migrate(pool), []);
      } finally {
        await pool.end();
      }
    });

    it('refuses a database migrated by a newer build', async () => {
      const url = await testDatabaseUrl();
      await (await opened({ databaseUrl: url })).close();
      await sql(url, "INSERT INTO act_schema_migrations (version, name) VALUES (999, 'from the future')");
      await assert.rejects(openPostgresStore({ databaseUrl: url }), /migration 999.*newer build/);
    });

    it('rolls a failing migration back whole and applies it once fixed', async () => {
      const url = await testDatabaseUrl();
      const pool = new pg.Pool({ connectionString: url });
      try {
        const good = { version: 1, name: 'one', sql: 'CREATE TABLE t1 (x int)' };
        const bad = {
          version: 2,
          name: 'two',
          sql: 'CREATE TABLE t2 (x int); SELECT nope_no_such_function()',
        };
        await assert.rejects(migrate(pool, [good, bad]), /migration 2 \(two\) failed/);
        assert.deepEqual(
          (await pool.query('SELECT version FROM act_schema_migrations')).rows.map((r) => r.version),
          [1],
        );
        assert.equal((await pool.query("SELECT to_regclass('t2') AS t")).rows[0].t, null, 't2 rolled back');
        assert.deepEqual(await migrate(pool, [good, { ...bad, sql: 'CREATE TABLE t2 (x int)' }]), [2]);
      } finally {
        await pool.end();
      }
    });

    it('fails to open with a clear UNAVAILABLE error when the server cannot be reached', async () => {
      const cluster = await sharedPostgresCluster();
      const url = cluster.url('postgres').replace(`:${cluster.port}/`, ':1/');
      await assert.rejects(
        openPostgresStore({ databaseUrl: url, connectTimeoutMs: 2000 }),
        (err: unknown) => {
          assert.ok(err instanceof ActError && err.code === 'UNAVAILABLE', String(err));
          assert.match(err.message, /PostgreSQL store unavailable \(migrating\)/);
          return true;
        },
      );
    });
  });

  it('hands out revisions a raw SQL reader of the change log sees without gaps or reordering', async () => {
    // The reader polls act_changes directly: with revisions from a plain sequence, a transaction that
    // took N and commits after N+1 would show N+1 first, and this reader would have skipped N.
    const url = await testDatabaseUrl();
    const writers = await Promise.all([0, 1, 2].map(() => opened({ databaseUrl: url })));
    const reader = new pg.Client({ connectionString: url });
    await reader.connect();
    const perWriter = 60;
    const total = perWriter * writers.length;
    let done = false;
    const seen: number[] = [];
    try {
      const follow = (async () => {
        let at = 0;
        while (!done || at < total) {
          const { rows } = await reader.query<{ revision: string }>(
            'SELECT revision FROM act_changes WHERE revision > $1 ORDER BY revision',
            [at],
          );
          for (const r of rows) {
            const rev = Number(r.revision);
            assert.equal(rev, at + 1, `after ${at} the reader saw ${rev}`);
            at = rev;
            seen.push(rev);
          }
        }
      })();
      await Promise.all(
        writers.map(async (w, k) => {
          for (let i = 0; i < perWriter; i++) {
            await w.write(async (tx) => {
              // Spend time inside the transaction, so commits of the replicas overlap.
              await tx.get('agents', `a${i}`);
              tx.put('agents', `a${k}_${i}`, { k, i });
              tx.emit(agentChange(`a${k}_${i}`));
            });
          }
        }),
      );
      done = true;
      await follow;
    } finally {
      await reader.end();
    }
    assert.deepEqual(
      seen,
      Array.from({ length: total }, (_, i) => i + 1),
    );
  });

  it('loses no commit when the LISTEN connection is cut: it reconnects and catches up', async () => {
    const url = await testDatabaseUrl();
    const errors: Error[] = [];
    // No safety-net poll within the test's time: only LISTEN (and the catch-up after reconnecting) can deliver.
    const follower = await opened({ databaseUrl: url, pollMs: 600_000, onError: (e) => errors.push(e) });
    const writer = await opened({ databaseUrl: url });
    const seen: CommitEvent[] = [];
    follower.onCommit((e) => seen.push(e));
    for (let round = 0; round < 3; round++) {
      const cut = await sql<{ n: string }>(
        url,
        `SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity
         WHERE application_name = 'act-store-listen' AND datname = current_database()`,
      );
      assert.ok(Number(cut[0]!.n) >= 1, 'a LISTEN connection was cut');
      // Commits while the follower is not listening.
      for (let i = 0; i < 5; i++) await writer.write(async (w) => w.emit(agentChange(`r${round}_${i}`)));
      await eventually(() => seen.length === (round + 1) * 5, `the follower to catch up (round ${round})`);
    }
    assert.deepEqual(
      seen.map((e) => e.revision),
      Array.from({ length: 15 }, (_, i) => i + 1),
    );
    assert.ok(
      errors.some((e) => /LISTEN connection lost/.test(e.message)),
      'the loss was reported',
    );
  });

  it('delivers by polling alone when nothing is LISTENed (behind a pooler that cannot LISTEN)', async () => {
    const url = await testDatabaseUrl();
    const follower = await opened({ databaseUrl: url, listen: false, pollMs: 50 });
    const writer = await opened({ databaseUrl: url });
    const listeners = await sql<{ n: string }>(
      url,
      `SELECT count(*) AS n FROM pg_stat_activity
       WHERE application_name = 'act-store-listen' AND datname = current_database()`,
    );
    assert.equal(Number(listeners[0]!.n), 1, "only the writer's LISTEN connection");
    const seen: number[] = [];
    const audit: string[] = [];
    follower.onCommit((e) => seen.push(e.revision));
    follower.audit.onAppend((rs) => audit.push(...rs.map((r) => r.audit_id)));
    for (let i = 0; i < 3; i++) await writer.write(async (w) => w.emit(agentChange(`p${i}`)));
    const rec = auditRec({ ms: T0 });
    await writer.audit.append([rec]);
    await eventually(() => seen.length === 3 && audit.length === 1, 'the poll to deliver');
    assert.deepEqual(seen, [1, 2, 3]);
    assert.deepEqual(audit, [rec.audit_id]);
    // Its own writes it sees at once.
    const { revision } = await follower.write(async (w) => w.emit(agentChange('own')));
    assert.equal(seen.at(-1), revision);
  });

  describe('a server restart', () => {
    let cluster: PostgresCluster;
    before(async () => {
      cluster = await startPostgresCluster();
    });
    after(async () => {
      await cluster?.stop();
    });

    it('rejects calls during the outage with UNAVAILABLE, then works again; the feed re-LISTENs and catches up', async () => {
      const url = await cluster.createDatabase();
      const errors: Error[] = [];
      const a = await opened({ databaseUrl: url, connectTimeoutMs: 2000, onError: (e) => errors.push(e) });
      // b learns of commits by LISTEN only (no poll within the test), so catching up proves the re-LISTEN.
      const b = await opened({ databaseUrl: url, pollMs: 600_000, connectTimeoutMs: 2000 });
      const seenA: number[] = [];
      const seenB: number[] = [];
      const auditB: string[] = [];
      a.onCommit((e) => seenA.push(e.revision));
      b.onCommit((e) => seenB.push(e.revision));
      b.audit.onAppend((rs) => auditB.push(...rs.map((r) => r.audit_id)));
      await a.write(async (w) => w.emit(agentChange('before')));
      await eventually(() => seenB.length === 1, 'b to see the first commit');

      await cluster.stopServer();
      const unavailable = (err: unknown) => {
        assert.ok(err instanceof ActError && err.code === 'UNAVAILABLE', String(err));
        assert.match(err.message, /PostgreSQL store unavailable/);
        return true;
      };
      await assert.rejects(
        a.write(async (w) => w.emit(agentChange('during'))),
        unavailable,
      );
      await assert.rejects(
        a.read((r) => r.get('agents', 'x')),
        unavailable,
      );
      await assert.rejects(a.changesSince(0), unavailable);
      await assert.rejects(a.audit.append([auditRec({ ms: T0 })]), unavailable);
      await assert.rejects(
        a.ops.update('budgets', 'k', () => ({ value: 1, result: 1 })),
        unavailable,
      );
      assert.equal(await a.revision(), 1, 'nothing was committed');

      await cluster.startServer();
      await eventually(async () => {
        try {
          await a.write(async (w) => w.emit(agentChange('after')));
          return true;
        } catch (err) {
          unavailable(err);
          return false;
        }
      }, 'a write to succeed after the restart');
      const rec = auditRec({ ms: T0 + 5 });
      assert.equal(await a.audit.append([rec]), 1);
      assert.deepEqual(seenA, [1, 2]);
      await eventually(() => seenB.length === 2, 'b to catch up after the restart');
      assert.deepEqual(seenB, [1, 2]);
      await eventually(() => auditB.length === 1, 'b to hear the audit record');
      assert.deepEqual(auditB, [rec.audit_id]);
      assert.deepEqual(
        await b.changesSince(0).then((e) => (e as { revision: number }[]).map((x) => x.revision)),
        [1, 2],
      );
      assert.equal(await b.ops.update('budgets', 'k', () => ({ value: 1, result: 'ok' })), 'ok');
      assert.ok(errors.length > 0, 'the lost connections were reported to onError');
    });
  });

  describe('audit partitions', () => {
    const month = (ms: number) => {
      const d = new Date(ms);
      return `act_audit_y${d.getUTCFullYear()}m${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
    };
    const partitions = async (url: string) =>
      (
        await sql<{ relname: string }>(
          url,
          `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
           WHERE i.inhparent = 'act_audit'::regclass ORDER BY c.relname`,
        )
      ).map((r) => r.relname);
    const rowsIn = async (url: string, table: string) =>
      Number((await sql<{ n: string }>(url, `SELECT count(*) AS n FROM ${table}`))[0]!.n);

    it('puts records in monthly partitions by the time in their id, odd ones in the default partition', async () => {
      const url = await testDatabaseUrl();
      const s = await opened({ databaseUrl: url });
      const day = 86_400_000;
      const now = Date.now();
      const recs = [
        auditRec({ ms: now }),
        auditRec({ ms: now - 40 * day }),
        auditRec({ ms: now - 80 * day }),
        auditRec({ ms: now + 400 * day }), // beyond the window: no partition is made for it
      ];
      const timeless = { ...auditRec({ ms: now }), audit_id: 'audit_notime' };
      assert.equal(await s.audit.append([...recs, timeless]), 5);
      const parts = await partitions(url);
      for (const ms of [now, now - 40 * day, now - 80 * day]) assert.ok(parts.includes(month(ms)), month(ms));
      assert.ok(!parts.includes(month(now + 400 * day)));
      assert.equal(await rowsIn(url, 'act_audit_default'), 2, 'the far-future record and the timeless one');
      // Both are found like any other.
      const all = await s.audit.query({}, '', 10);
      assert.equal(all.records.length, 5);
      assert.equal(
        (await s.audit.query({ sinceMs: now + 399 * day }, '', 10)).records[0]?.audit_id,
        recs[3]!.audit_id,
      );
      assert.equal(await s.audit.lastOfSource('sc_1').then((r) => r !== undefined), true);
    });

    it('prune drops whole months before the time and deletes the rest by id; the count stays exact', async () => {
      const url = await testDatabaseUrl();
      const s = await opened({ databaseUrl: url });
      const b = await opened({ databaseUrl: url });
      const day = 86_400_000;
      const now = Date.now();
      const start = Date.UTC(new Date(now).getUTCFullYear() - 1, 0, 1); // 1 January last year
      const recs = Array.from({ length: 200 }, (_, i) => auditRec({ ms: start + i * 2 * day, seq: i + 1 }));
      await s.audit.append(recs);
      const before = await partitions(url);
      assert.ok(before.length >= 13, `partitions: ${before.join(', ')}`);
      const cut = Date.UTC(new Date(start).getUTCFullYear(), 4, 10); // 10 May: drops Jan..Apr whole
      const expected = recs.filter((r) => (sortableIdTime(r.audit_id) ?? 0) < cut).length;
      // Two replicas prune at once: each record is removed once.
      const [n1, n2] = await Promise.all([s.audit.prune(cut), b.audit.prune(cut)]);
      assert.equal(n1 + n2, expected);
      const after = await partitions(url);
      for (const m of [0, 1, 2, 3])
        assert.ok(!after.includes(month(Date.UTC(new Date(start).getUTCFullYear(), m, 15))));
      assert.ok(after.includes(month(cut)), 'the month of the cut stays, with its later records');
      assert.equal(await s.audit.count(), 200 - expected);
      assert.equal(await rowsIn(url, 'act_audit'), 200 - expected);
      const left: string[] = [];
      for await (const r of s.audit.export({})) left.push(r.audit_id);
      assert.deepEqual(
        left,
        recs.filter((r) => (sortableIdTime(r.audit_id) ?? 0) >= cut).map((r) => r.audit_id),
      );
      // A late record for a dropped month still goes in (to a re-made partition or the default one).
      const late = auditRec({ ms: start + day });
      assert.equal(await b.audit.append([late]), 1);
      assert.equal(await b.audit.count(), 200 - expected + 1);
    });
  });

  it('orders keys and audit ids bytewise whatever the database collation (an ICU database)', async () => {
    const cluster = await sharedPostgresCluster();
    const name = `act_icu_${process.pid}`;
    await sql(
      cluster.url(),
      `CREATE DATABASE ${name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`,
    );
    const url = cluster.url(name);
    const order = await sql<{ x: string }>(
      url,
      "SELECT x FROM (VALUES ('a'), ('B'), ('\uff5e')) v(x) ORDER BY x",
    );
    assert.notDeepEqual(
      order.map((r) => r.x),
      ['B', 'a', '\uff5e'],
      'this database does not sort text by code point',
    );
    const s = await opened({ databaseUrl: url });
    const keys = ['a', 'B', 'é', 'z', '\u{1f600}', '\uff5e', 'a-b', 'a_b', 'A'];
    await s.write(async (w) => {
      for (const k of keys) w.put('index', k, 1);
    });
    assert.deepEqual(
      (await s.read((r) => r.scan('index', { limit: 100 }))).map((r) => r.key),
      [...keys].sort(compareKeys),
    );
    // Audit ids that differ in case and punctuation only sort by code point too.
    const ids = [
      'audit_0000000001AAAA',
      'audit_0000000001aaaa',
      'audit_0000000001-aaa',
      'audit_0000000001_aaa',
    ];
    await s.audit.append(ids.map((audit_id) => ({ ...auditRec({ ms: T0 }), audit_id })));
    const got: string[] = [];
    for await (const r of s.audit.export({})) got.push(r.audit_id);
    assert.deepEqual(got, [...ids].sort(compareKeys));
  });
});
