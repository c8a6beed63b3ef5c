/**
 * LMDB-only details of the store. Every behaviour of the Store contract is in conformance.test.ts,
 * which runs against LMDB and PostgreSQL alike.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { lmdbEngine, auditRec, T0, useStores } from './store-engines';

describe('LMDB store (engine-specific)', () => {
  const stores = useStores(lmdbEngine());

  it('creates the data directory with mode 0700', async () => {
    const { location } = await stores.fresh();
    assert.equal(statSync(location).mode & 0o777, 0o700);
  });

  it('stores no part of an audit batch when LMDB rejects one record (an index key over its key size)', async () => {
    const { s } = await stores.fresh();
    await assert.rejects(
      s.audit.append([auditRec({ ms: T0 }), auditRec({ ms: T0, agent: 'a'.repeat(3000) })]),
    );
    assert.equal(await s.audit.count(), 0);
    assert.deepEqual(await s.audit.query({}, '', 10), { records: [], nextCursor: '' });
    assert.equal(await s.audit.append([auditRec({ ms: T0 })]), 1);
  });
});
