import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openStore } from '../../../src/store';
import { testDatabaseUrl } from '../../support/postgres';

describe('openStore', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'act-open-store-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('opens LMDB in the data dir when no database URL is set (or it is empty)', async () => {
    for (const databaseUrl of [undefined, '']) {
      const s = await openStore({ dataDir: join(dir, `lmdb-${databaseUrl === undefined}`), databaseUrl });
      try {
        assert.equal(s.kind, 'lmdb');
        assert.equal(
          (await s.write(async (w) => w.emit({ kind: { $case: 'agent_deleted', value: 'a' } }))).revision,
          1,
        );
      } finally {
        await s.close();
      }
    }
  });

  it('opens PostgreSQL when a database URL is set, passing the common options on', async () => {
    const s = await openStore({
      dataDir: join(dir, 'unused'),
      databaseUrl: await testDatabaseUrl(),
      changeLogRetention: 2,
    });
    try {
      assert.equal(s.kind, 'postgres');
      for (let i = 0; i < 4; i++)
        await s.write(async (w) => w.emit({ kind: { $case: 'agent_deleted', value: `a${i}` } }));
      assert.equal(await s.changesSince(1), 'too-old', 'retention 2 reached the driver');
      assert.equal((await s.changesSince(2)) !== 'too-old', true);
    } finally {
      await s.close();
    }
  });
});
