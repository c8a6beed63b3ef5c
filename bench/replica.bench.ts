/**
 * The sidecar's LMDB replica at scale: 100k agents, 100k revocations and 1k policies,
 * delivered as one snapshot in 1000-change chunks into a temp directory.
 *
 * Results:
 * - `snapshot_apply_ms`: beginSnapshot → all chunks → commitSnapshot resolved (durable).
 * - `cold_open_ms`: close, then LmdbReplica.open() on the same directory.
 * - `cold_first_decide_ms`: open + the first decide() answer (an uncached Ed25519 verify,
 *   a key import, a policy decode + compile, LMDB reads).
 * - `decide_one_token_ops_s`: warm decide() ALLOW with one token (VerificationCache hit,
 *   agent and compiled policy cached, one LMDB revocation lookup per call).
 * - `decide_1k_tokens_ops_s`: warm decide() ALLOW rotating 1000 tokens of 1000 agents and
 *   100 policies (all verified and cached before timing).
 * - `rss_mb`: process RSS after load and a GC when exposed (`node --expose-gc`), with the
 *   replica open and its caches warm; `rss_start_mb` is the same process before anything
 *   (node + tsx + the imported modules), `heap_used_mb` the JS heap in use, `db_file_mb`
 *   the LMDB file (its touched pages count in RSS: it is memory-mapped). The snapshot's
 *   200k buffered Change objects are garbage by then, but V8 does not return all the
 *   heap it grew for them, so this over-states a restarted sidecar's steady state.
 *
 * Run standalone with `npx tsx bench/replica.bench.ts [--quick]`.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decide, InMemoryCounters, type DecideDeps, type DecisionRequest } from '../src/decision';
import { Agent, AgentStatus, Policy } from '../src/gen/act/v1/admin';
import type { Change } from '../src/gen/act/v1/sync';
import { TokenClaims } from '../src/gen/act/v1/token';
import { LmdbReplica } from '../src/replica';
import { generateSigningKey, signToken, VerificationCache, type SigningKeyPair } from '../src/token';

const NOW = Date.parse('2026-03-02T10:00:00Z');
const DAY = 86_400_000;
const AGENTS = 100_000;
const REVOCATIONS = 100_000;
const POLICIES = 1_000;
const CHUNK = 1_000;

const agentId = (i: number) => `agent_${i.toString().padStart(8, '0')}`;
const policyId = (i: number) => `policy_${i.toString().padStart(6, '0')}`;

function* world(key: SigningKeyPair): Generator<Change> {
  yield {
    kind: {
      $case: 'public_key',
      value: { key_id: key.keyId, public_key: Buffer.from(key.publicKeyRaw), created_at_ms: key.createdAtMs },
    },
  };
  for (let i = 0; i < POLICIES; i++) {
    yield {
      kind: {
        $case: 'policy',
        value: Policy.fromPartial({
          policy_id: policyId(i),
          name: `Policy ${i}`,
          version: 1,
          capabilities: ['read:customer_profile', `read:doc_${i}`, 'update:ticket:tkt_*'],
          conditions: [{ expression: 'context.reason != ""', actions: [], description: 'a reason is given' }],
        }),
      },
    };
  }
  for (let i = 0; i < AGENTS; i++) {
    yield {
      kind: {
        $case: 'agent',
        value: Agent.fromPartial({
          agent_id: agentId(i),
          name: `agent ${i}`,
          status: AgentStatus.ACTIVE,
          metadata: { team: `team_${i % 50}`, environment: 'production' },
        }),
      },
    };
  }
  for (let i = 0; i < REVOCATIONS; i++) {
    yield {
      kind: {
        $case: 'revocation',
        value: {
          token_id: `tok_revoked_${i}`,
          revoked_at_ms: NOW - DAY,
          expires_at_ms: NOW + DAY,
          agent_id: agentId(i % AGENTS),
        },
      },
    };
  }
}

function token(key: SigningKeyPair, i: number, policy: number): string {
  return signToken(
    TokenClaims.fromPartial({
      version: 1,
      key_id: key.keyId,
      token_id: `tok_bench_${i}`,
      agent_id: agentId(i),
      policy_ids: [policyId(policy)],
      issued_at_ms: NOW - DAY,
      not_before_ms: NOW - DAY,
      expires_at_ms: NOW + DAY,
    }),
    key,
  );
}

const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;

/** Median ops/s of `rounds` rounds of `n` calls, after a warm-up; every call must ALLOW. */
function measure(n: number, rounds: number, once: (i: number) => string): number {
  for (let i = 0; i < Math.min(n, 20_000); i++)
    if (once(i) !== 'ALLOW') throw new Error('warm-up did not ALLOW');
  const perRound: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let wrong = 0;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (once(i) !== 'ALLOW') wrong++;
    const ns = Number(process.hrtime.bigint() - t0);
    if (wrong > 0) throw new Error(`${wrong} of ${n} decisions were not ALLOW`);
    perRound.push(n / (ns / 1e9));
  }
  perRound.sort((a, b) => a - b);
  return Math.round(perRound[Math.floor(perRound.length / 2)]!);
}

/** Loads the world through a snapshot and measures the replica; returns figures by name. */
export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const n = opts.quick ? 50_000 : 300_000;
  const rounds = opts.quick ? 3 : 7;
  const dir = mkdtempSync(join(tmpdir(), 'act-replica-bench-'));
  const out: Record<string, number> = {};
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  const rssStart = process.memoryUsage().rss;
  let replica: LmdbReplica | undefined;
  try {
    const key = generateSigningKey(NOW - DAY);
    replica = LmdbReplica.open({ dataDir: dir });

    const t0 = process.hrtime.bigint();
    replica.beginSnapshot(1, 'bench-store');
    let chunk: Change[] = [];
    for (const c of world(key)) {
      chunk.push(c);
      if (chunk.length === CHUNK) {
        replica.snapshotChunk(chunk);
        chunk = [];
      }
    }
    if (chunk.length > 0) replica.snapshotChunk(chunk);
    await replica.commitSnapshot();
    out['replica.snapshot_apply_ms'] = Math.round(ms(t0));

    const stats = replica.stats();
    if (stats.agents !== AGENTS || stats.revocations !== REVOCATIONS || stats.policies !== POLICIES) {
      throw new Error(`unexpected replica contents: ${JSON.stringify(stats)}`);
    }

    // Cold: a restarted sidecar serving from disk.
    await replica.close();
    const first = token(key, 7, 7);
    const request: DecisionRequest = {
      token: first,
      action: 'read:customer_profile',
      resource: 'customer_1',
      context: { reason: 'bench' },
    };
    const t1 = process.hrtime.bigint();
    replica = LmdbReplica.open({ dataDir: dir });
    out['replica.cold_open_ms'] = Number(ms(t1).toFixed(2));
    const deps: DecideDeps = {
      view: replica,
      verifier: new VerificationCache(10_000),
      counters: new InMemoryCounters(),
      nowMs: NOW,
      stale: false,
    };
    const firstAnswer = decide(request, deps);
    out['replica.cold_first_decide_ms'] = Number(ms(t1).toFixed(2));
    if (firstAnswer.decision !== 'ALLOW') throw new Error(`cold decide: ${firstAnswer.reasonCode}`);

    out['replica.decide_one_token_ops_s'] = measure(n, rounds, () => decide(request, deps).decision);

    const many: DecisionRequest[] = [];
    for (let i = 0; i < 1000; i++) many.push({ ...request, token: token(key, i * 97, i % 100) });
    out['replica.decide_1k_tokens_ops_s'] = measure(n, rounds, (i) => decide(many[i % 1000]!, deps).decision);

    gc?.();
    const mem = process.memoryUsage();
    out['replica.rss_start_mb'] = Math.round(rssStart / 1e6);
    out['replica.rss_mb'] = Math.round(mem.rss / 1e6);
    out['replica.heap_used_mb'] = Math.round(mem.heapUsed / 1e6);
    out['replica.heap_total_mb'] = Math.round(mem.heapTotal / 1e6);
    out['replica.db_file_mb'] = Math.round(statSync(join(dir, 'replica.mdb')).size / 1e6);
    return out;
  } finally {
    await replica?.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [name, v] of Object.entries(r))
        console.log(`${name.padEnd(36)} ${v.toLocaleString('en-US')}`);
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
