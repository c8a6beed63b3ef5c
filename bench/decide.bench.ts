/**
 * Warm decide() throughput on one core, in-process (no gRPC, no LMDB): the engine's
 * ceiling, against which the sidecar's end-to-end figures can be read. The world comes
 * from test/cases/*.json through the same fixture as the decision case tests; one token
 * is reused so the VerificationCache is warm and each call is a cache hit, not an
 * Ed25519 verify. Time is a fixed instant inside the seed's 09:00-17:00 UTC window.
 *
 * Paths:
 * - `seed_allow`: the seed's Customer Support Policy, read:customer_profile, counters
 *   never applied, so every call takes the same full ALLOW path (all checks, counter reads).
 * - `seed_allow_consume`: the seed policy with rate_limit "1000000 per second" and
 *   max_actions_per_day 1000000000, and each ALLOW's usage applied to InMemoryCounters.
 * - `seed_deny`: delete:customer_account, not granted (CAPABILITY_NOT_GRANTED).
 * - `billing_cel`: billing-agent.json, create:transaction amount 500 — the CEL approval
 *   rule `context.amount > 1000` is evaluated and passes (ALLOW).
 *
 * Run standalone with `npx tsx bench/decide.bench.ts [--quick]`, or through bench/run.ts.
 * Results are ops/s (median of several timed rounds after a warm-up).
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { decide, InMemoryCounters, type DecideDeps, type DecisionRequest } from '../src/decision';
import { VerificationCache } from '../src/token';
import { buildWorld, type CaseFile } from '../test/support/decision-fixture';

/** Acceptance target for the seed policy, warm, one core. */
export const TARGET_OPS_PER_SEC = 500_000;

const CASES = path.join(__dirname, '../test/cases');

function loadCase(name: string): CaseFile {
  return JSON.parse(readFileSync(path.join(CASES, name), 'utf8')) as CaseFile;
}

/** The seed file with its limits raised so a long run keeps allowing while it consumes. */
function withHighLimits(file: CaseFile): CaseFile {
  const copy = structuredClone(file);
  for (const p of copy.policies) {
    const constraints = (p.constraints ?? {}) as Record<string, unknown>;
    p.constraints = { ...constraints, rate_limit: '1000000 per second', max_actions_per_day: 1_000_000_000 };
  }
  return copy;
}

interface Path {
  name: string;
  expect: string;
  /** Runs one decision and returns its kind (checked, so a path cannot silently change). */
  once: () => string;
  /** Resets per-round state (counters), so rounds are comparable. */
  reset?: () => void;
}

function makePath(
  name: string,
  file: CaseFile,
  tokenName: string,
  req: Omit<DecisionRequest, 'token'>,
  expect: string,
  consume: boolean,
): Path {
  const world = buildWorld(file);
  const token = world.tokens.get(tokenName);
  if (token === undefined) throw new Error(`${name}: no token ${tokenName}`);
  const request: DecisionRequest = { ...req, token };
  let counters = new InMemoryCounters();
  const deps: DecideDeps = {
    view: world.view,
    verifier: new VerificationCache(1000),
    counters,
    nowMs: Date.parse('2026-03-02T10:00:00Z'), // Monday 10:00 UTC: inside the allowed hours
    stale: false,
  };
  const once = consume
    ? () => {
        const r = decide(request, deps);
        counters.apply(r.usage);
        return r.decision;
      }
    : () => decide(request, deps).decision;
  const reset = () => {
    counters = new InMemoryCounters();
    deps.counters = counters;
  };
  return { name, expect, once, reset };
}

/** Times `rounds` rounds of `n` calls after a warm-up; returns the median round's ops/s. */
function measure(p: Path, n: number, rounds: number): number {
  const check = (kind: string) => {
    if (kind !== p.expect) throw new Error(`${p.name}: expected ${p.expect}, got ${kind}`);
  };
  p.reset?.();
  for (let i = 0; i < Math.min(n, 20_000); i++) check(p.once());
  const perRound: number[] = [];
  for (let round = 0; round < rounds; round++) {
    p.reset?.();
    let wrong = 0;
    const expect = p.expect;
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) if (p.once() !== expect) wrong++;
    const ns = Number(process.hrtime.bigint() - t0);
    if (wrong > 0) throw new Error(`${p.name}: ${wrong} of ${n} decisions were not ${expect}`);
    perRound.push(n / (ns / 1e9));
  }
  perRound.sort((a, b) => a - b);
  return Math.round(perRound[Math.floor(perRound.length / 2)]!);
}

/** Benchmarks decide() on four paths; `quick` cuts rounds and iterations. Returns ops/s per path. */
export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const n = opts.quick ? 50_000 : 500_000;
  const rounds = opts.quick ? 3 : 7;
  const seed = loadCase('seed-customer-support.json');
  const ctx = { ip: '10.0.1.50', reason: 'User inquiry about order status' };
  const read = { action: 'read:customer_profile', resource: 'customer_54321', context: ctx };
  const paths: Path[] = [
    makePath('decide.seed_allow', seed, 'support', read, 'ALLOW', false),
    makePath('decide.seed_allow_consume', withHighLimits(seed), 'support', read, 'ALLOW', true),
    makePath(
      'decide.seed_deny',
      seed,
      'support',
      { action: 'delete:customer_account', resource: 'customer_54321', context: {} },
      'DENY',
      false,
    ),
    makePath(
      'decide.billing_cel',
      loadCase('billing-agent.json'),
      'billing',
      { action: 'create:transaction', resource: 'acct_9', context: { amount: 500 } },
      'ALLOW',
      false,
    ),
  ];
  const out: Record<string, number> = {};
  for (const p of paths) out[p.name] = measure(p, n, rounds);
  return out;
}

/** One line for the acceptance target, e.g. "seed policy warm: 1,234,567 ops/s (target ≥ 500,000): PASS". */
export function verdict(results: Record<string, number>): string {
  const ops = results['decide.seed_allow'] ?? 0;
  const pass = ops >= TARGET_OPS_PER_SEC ? 'PASS' : 'FAIL';
  return `seed policy warm decide(): ${ops.toLocaleString('en-US')} ops/s (target ≥ ${TARGET_OPS_PER_SEC.toLocaleString('en-US')}): ${pass}`;
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => {
      for (const [name, ops] of Object.entries(r)) {
        const ns = (1e9 / ops).toFixed(0);
        console.log(
          `${name.padEnd(28)} ${ops.toLocaleString('en-US').padStart(12)} ops/s ${ns.padStart(7)} ns/op`,
        );
      }
      console.log(verdict(r));
    },
    (e: unknown) => {
      console.error(e);
      process.exitCode = 1;
    },
  );
}
