/**
 * Micro-benchmarks for the policy hot path: capability matching, allowed-hours checks and
 * CEL evaluation with @marcbachmann/cel-js (used) and @bufbuild/cel (compared; optional,
 * measured only when installed: `npm install --no-save @bufbuild/cel`).
 */
import { Environment } from '@marcbachmann/cel-js';
import {
  capabilityMatches,
  compileRule,
  parseAction,
  parseAllowedHours,
  parseCapability,
} from '../src/policy';

const EXPRESSIONS: Record<string, string> = {
  simple: 'context.amount > 1000',
  and: 'context.amount > 1000 && context.environment == "production"',
  strings:
    'resource.startsWith("acct_eu_") && context.environment in ["production", "staging"] && agent.metadata.team == "billing"',
};

const INPUT = {
  action: 'create:transaction',
  resource: 'acct_eu_42',
  context: { amount: 1500, environment: 'production', ip: '10.0.1.50' },
  agent: { id: 'agent_12345', metadata: { team: 'billing' } },
};

let sink = 0;

/** ns per call of `f`, best of a few rounds (after a warm-up). */
function measure(f: () => unknown, iterations: number): number {
  for (let i = 0; i < Math.min(iterations, 10_000); i++) if (f()) sink++;
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (f()) sink++;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / iterations);
  }
  return Math.round(best * 10) / 10;
}

async function bufbuild(): Promise<Record<string, (ctx: typeof INPUT) => unknown> | undefined> {
  const name = '@bufbuild/cel'; // not a dependency: resolved at run time only
  let cel: any;
  try {
    cel = await import(name);
  } catch {
    return undefined;
  }
  const { celEnv, parse, plan, mapType, CelScalar } = cel;
  const env = celEnv({
    variables: {
      action: CelScalar.STRING,
      resource: CelScalar.STRING,
      context: mapType(CelScalar.STRING, CelScalar.DYN),
      agent: mapType(CelScalar.STRING, CelScalar.DYN),
    },
  });
  return Object.fromEntries(Object.entries(EXPRESSIONS).map(([k, e]) => [k, plan(env, parse(e))]));
}

/** Runs the benchmarks and prints ns/op; returns them keyed by name. */
export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const n = opts.quick ? 50_000 : 1_000_000;
  const out: Record<string, number> = {};
  const action = parseAction('read:customer_profile')!;
  const exact = parseCapability('read:customer_profile');
  const glob = parseCapability('read:customer_*:cust_eu_*');
  out['capabilityMatches exact'] = measure(() => capabilityMatches(exact, action, 'cust_eu_1'), n);
  out['capabilityMatches glob+pattern'] = measure(() => capabilityMatches(glob, action, 'cust_eu_1'), n);
  const utc = parseAllowedHours('Mon-Fri 09:00-17:00 UTC', 'allowed_hours');
  const berlin = parseAllowedHours('Mon-Fri 09:00-17:00 Europe/Berlin', 'allowed_hours');
  const t0 = Date.UTC(2026, 2, 27, 10);
  let k = 0;
  // Advance ~1 s per call, so the zone's offset cache sees real bucket changes.
  out['allowedHours.contains UTC'] = measure(() => utc.contains(t0 + (k++ % 86_400) * 1000), n);
  out['allowedHours.contains Europe/Berlin'] = measure(() => berlin.contains(t0 + (k++ % 86_400) * 1000), n);

  const marc = new Environment()
    .registerVariable('action', 'string')
    .registerVariable('resource', 'string')
    .registerVariable('context', 'map')
    .registerVariable('agent', 'map');
  const buf = await bufbuild();
  for (const [key, expr] of Object.entries(EXPRESSIONS)) {
    const raw = marc.parse(expr);
    out[`marcbachmann/cel-js ${key}`] = measure(() => raw(INPUT) === true, n);
    const rule = compileRule({ expression: expr, actions: [], description: '' }, 'bench');
    out[`compileRule.evaluate ${key}`] = measure(() => rule.evaluate(INPUT) === true, n);
    const planned = buf?.[key];
    if (planned) out[`bufbuild/cel ${key}`] = measure(() => planned(INPUT) === true, opts.quick ? n : n / 4);
  }
  out['marcbachmann/cel-js compile (and)'] = measure(
    () => compileRule({ expression: EXPRESSIONS['and']!, actions: [], description: '' }, 'b'),
    opts.quick ? 2_000 : 20_000,
  );

  const width = Math.max(...Object.keys(out).map((s) => s.length));
  for (const [name, ns] of Object.entries(out))
    console.log(`${name.padEnd(width)}  ${ns.toFixed(1).padStart(8)} ns/op`);
  if (sink < 0) console.log(sink); // keeps the results observable
  return out;
}

if (require.main === module) {
  void run({ quick: process.argv.includes('--quick') }); // top-level: nothing to await it
}
