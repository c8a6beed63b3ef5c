/**
 * Capability matching cost, normal vs adversarial resources: `capabilityMatches` on
 * ordinary resources (the fast paths and a short NFA run), on 10,000-char resources built
 * to make a backtracking matcher blow up (`*_*_*_*.pdf` against underscores, `a*a*a*a*a*b`
 * against `a`s, nested `**`), on a long pattern past one word of bits, and the dot-segment
 * check. For contrast, the RegExp the old matcher compiled `*_*_*_*.pdf` to, on only 200
 * underscores (one call; it grows as n⁴).
 *
 * Run standalone with `npx tsx bench/match.bench.ts [--quick]`, or through bench/run.ts.
 * Results are ns per call (best of 5 rounds after a warm-up).
 */
import { capabilityMatches, hasDotSegment, parseAction, parseCapability } from '../src/policy';

let sink = 0;

/** ns per call of `f`, best of 5 rounds after a warm-up; `expect` guards the path timed. */
function measure(f: () => boolean, expect: boolean, iterations: number): number {
  for (let i = 0; i < Math.max(1, Math.min(iterations, 2_000)); i++) {
    if (f() !== expect) throw new Error(`expected ${expect}`);
  }
  let best = Number.POSITIVE_INFINITY;
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) if (f()) sink++;
    best = Math.min(best, Number(process.hrtime.bigint() - t0) / iterations);
  }
  return Math.round(best * 10) / 10;
}

/** The old compile for globs with several `*`: a backtracking RegExp. */
function legacyRegExp(glob: string): RegExp {
  const src = glob
    .split('*')
    .map((s) => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${src}$`, 's');
}

export const describe =
  'capabilityMatches on normal resources vs 10,000-char adversarial ones (and a 256-char pattern on 1,024 chars), ' +
  'the dot-segment check, and the old backtracking RegExp on 200 underscores for contrast. ns per call, best of 5 rounds.';

export const unit = 'ns/op';

export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  const scale = opts.quick ? 0.1 : 1;
  const many = Math.round(1_000_000 * scale);
  const few = Math.max(20, Math.round(2_000 * scale));
  const out: Record<string, number> = {};
  const m = (key: string, cap: string, action: string, resource: string, expect: boolean, n: number) => {
    const c = parseCapability(cap);
    const a = parseAction(action);
    if (a === undefined) throw new Error(action);
    out[key] = measure(() => capabilityMatches(c, a, resource), expect, n);
  };

  m('match.normal exact', 'read:customer_profile:cust_1', 'read:customer_profile', 'cust_1', true, many);
  m('match.normal prefix*', 'read:customer_*:cust_eu_*', 'read:customer_profile', 'cust_eu_1', true, many);
  m('match.normal public/*', 'read:file:public/*', 'read:file', 'public/a.txt', true, many);
  m('match.normal docs/**/*.pdf', 'read:file:docs/**/*.pdf', 'read:file', 'docs/2024/q1/r.pdf', true, many);
  m('match.normal *_*_*_*.pdf', 'read:blob:*_*_*_*.pdf', 'read:blob', 'scan_2024_03_02.pdf', true, many);

  const u = '_'.repeat(10_000);
  m('match.adversarial *_*_*_*.pdf 10k _ (no match)', 'read:blob:*_*_*_*.pdf', 'read:blob', u, false, many);
  const uPdf = '_'.repeat(9_996) + '.pdf';
  m('match.adversarial *_*_*_*.pdf 10k _ + .pdf', 'read:blob:*_*_*_*.pdf', 'read:blob', uPdf, true, few);
  const as = 'a'.repeat(9_999) + 'b';
  m('match.adversarial a*a*a*a*a*b 10k a', 'read:x:a*a*a*a*a*b', 'read:x', as, true, few);
  const nested = 'a/'.repeat(4_999) + '/x';
  m('match.adversarial **/**/**/**/x 10k', 'read:x:**/**/**/**/x', 'read:x', nested, true, few);
  const longPattern = 'read:x:' + '*a'.repeat(128);
  m(
    'match.adversarial 256-char pattern, 1k a',
    longPattern,
    'read:x',
    'a'.repeat(1_024),
    true,
    Math.max(5, few / 20),
  );

  out['hasDotSegment normal'] = measure(() => hasDotSegment('docs/2024/q1/r.pdf'), false, many);
  out['hasDotSegment 1k of ./'] = measure(() => hasDotSegment('a./'.repeat(341)), false, few * 10);

  const legacy = legacyRegExp('*_*_*_*.pdf');
  out['legacy RegExp *_*_*_*.pdf 200 _ (one call)'] = measure(() => legacy.test('_'.repeat(200)), false, 1);

  const width = Math.max(...Object.keys(out).map((s) => s.length));
  for (const [name, ns] of Object.entries(out))
    console.log(`${name.padEnd(width)}  ${ns.toFixed(1).padStart(14)} ns/op`);
  if (sink < 0) console.log(sink); // keeps the results observable
  return out;
}

if (require.main === module) {
  void run({ quick: process.argv.includes('--quick') }); // top-level: nothing to await it
}
