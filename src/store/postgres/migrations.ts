/**
 * Versioned schema migrations, applied on open. Each migration runs in its own transaction together
 * with its row in `act_schema_migrations`; the whole run holds a session advisory lock, so when
 * several replicas open one database at once each migration is applied exactly once and the others
 * wait, then find it applied. A database migrated by a newer build (a version this build does not
 * know) is refused rather than used with a schema it does not understand.
 */
import type pg from 'pg';
import { LockSpace } from './keys';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The store's tables (kept in step with types.ts TableName). */
export const TABLES = ['agents', 'policies', 'tokens', 'keys', 'approvals', 'apikeys', 'index'] as const;
/** The operational tables (kept in step with types.ts OpsTable). */
export const OPS_TABLES = ['budgets', 'sidecars', 'outbox'] as const;

const keyValueTable = (name: string) => `CREATE TABLE ${name} (key bytea PRIMARY KEY, value json NOT NULL);`;

/**
 * Values are `json`, not `jsonb`: `json` keeps the text exactly (key order, and strings holding NUL
 * or lone surrogates, which `jsonb` rejects), as LMDB returns what was put.
 */
const V1 = `
CREATE TABLE act_meta (key text PRIMARY KEY, value text NOT NULL);

-- The one revision row: every changing write transaction locks it first and bumps it, so revisions
-- are handed out in commit order with no gaps. oldest = the oldest revision kept in act_changes.
CREATE TABLE act_revision (
  id smallint PRIMARY KEY CHECK (id = 1),
  revision bigint NOT NULL,
  oldest bigint NOT NULL
);
INSERT INTO act_revision VALUES (1, 0, 1);

-- The change log, one row per revision (protobuf-encoded act.v1.Change messages).
CREATE TABLE act_changes (
  revision bigint PRIMARY KEY,
  changes bytea[] NOT NULL,
  committed_at timestamptz NOT NULL DEFAULT now()
);

${TABLES.map((t) => keyValueTable(`act_${t}`)).join('\n')}
${OPS_TABLES.map((t) => keyValueTable(`act_ops_${t}`)).join('\n')}

-- Partition time of an audit record: the time in its id (NULL for an id without one: -infinity).
CREATE FUNCTION act_audit_t(ms bigint) RETURNS timestamptz
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $$ SELECT CASE WHEN ms IS NULL THEN '-infinity'::timestamptz
                    ELSE timestamptz '1970-01-01 00:00:00+00' + ms * interval '1 millisecond' END $$;

-- The audit trail: filters as columns (possibly shortened, see postgres-audit.ts; the protobuf record
-- in "record" is the truth and results are re-checked against it), partitioned by month of the id's
-- time. Ids without a time, and months outside the partition window, go to the default partition.
CREATE TABLE act_audit (
  audit_id text COLLATE "C" NOT NULL,
  t timestamptz NOT NULL,
  agent_id text COLLATE "C" NOT NULL,
  token_id text COLLATE "C" NOT NULL,
  action text COLLATE "C" NOT NULL,
  decision integer NOT NULL,
  reason_code integer NOT NULL,
  source text COLLATE "C" NOT NULL,
  seq bigint NOT NULL,
  context jsonb,
  details jsonb,
  record bytea NOT NULL,
  PRIMARY KEY (audit_id, t)
) PARTITION BY RANGE (t);
CREATE TABLE act_audit_default PARTITION OF act_audit DEFAULT;
CREATE INDEX act_audit_agent ON act_audit (agent_id, audit_id);
CREATE INDEX act_audit_token ON act_audit (token_id, audit_id);
CREATE INDEX act_audit_action ON act_audit (action, audit_id);
CREATE INDEX act_audit_decision ON act_audit (decision, audit_id);
CREATE INDEX act_audit_reason ON act_audit (reason_code, audit_id);

-- Chain heads: the last accepted record per source (kept when records are pruned).
CREATE TABLE act_audit_heads (
  source text COLLATE "C" PRIMARY KEY,
  audit_id text COLLATE "C" NOT NULL,
  t timestamptz NOT NULL,
  seq bigint NOT NULL,
  hash text NOT NULL
);

-- The record count and the audit feed's sequence: one row, locked last by every storing transaction,
-- so feed entries commit in sequence order (the same trick as act_revision).
CREATE TABLE act_audit_state (
  id smallint PRIMARY KEY CHECK (id = 1),
  seq bigint NOT NULL,
  count bigint NOT NULL
);
INSERT INTO act_audit_state VALUES (1, 0, 0);

-- One row per storing transaction: which records it stored, for onAppend on every replica.
CREATE TABLE act_audit_feed (
  seq bigint PRIMARY KEY,
  audit_ids text[] NOT NULL,
  ms bigint[] NOT NULL,
  stored_at timestamptz NOT NULL DEFAULT now()
);
`;

/** Every migration of this build, in order. Append only: never edit one that has shipped. */
export const MIGRATIONS: readonly Migration[] = [{ version: 1, name: 'initial schema', sql: V1 }];

/**
 * Applies the migrations `pool`'s database lacks. Returns the versions applied by this call.
 * @throws if the database holds a version this build does not know (a newer build migrated it)
 */
export async function migrate(
  pool: pg.Pool,
  migrations: readonly Migration[] = MIGRATIONS,
): Promise<number[]> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('SELECT pg_advisory_lock($1, 0)', [LockSpace.migrate]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS act_schema_migrations (
        version integer PRIMARY KEY,
        name text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now()
      )`);
      const { rows } = await client.query<{ version: number }>('SELECT version FROM act_schema_migrations');
      const have = new Set(rows.map((r) => r.version));
      const known = new Set(migrations.map((m) => m.version));
      const unknown = [...have].filter((v) => !known.has(v)).sort((a, b) => a - b);
      if (unknown.length > 0) {
        throw new Error(
          `the database schema has migration ${unknown.join(', ')}, which this build does not know ` +
            `(it knows up to ${Math.max(0, ...known)}): it was migrated by a newer build; upgrade this one`,
        );
      }
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        if (have.has(m.version)) continue;
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO act_schema_migrations (version, name) VALUES ($1, $2)', [
            m.version,
            m.name,
          ]);
          await client.query('COMMIT');
        } catch (err) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw new Error(`migration ${m.version} (${m.name}) failed: ${(err as Error).message}`, {
            cause: err,
          });
        }
        applied.push(m.version);
      }
      return applied;
    } finally {
      await client.query('SELECT pg_advisory_unlock($1, 0)', [LockSpace.migrate]).catch(() => {
        broken = true; // a session lock we cannot release must not go back to the pool
      });
    }
  } catch (err) {
    broken = true;
    throw err;
  } finally {
    client.release(broken);
  }
}
