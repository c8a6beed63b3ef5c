/**
 * The glob matcher (src/policy/glob.ts): agreement with the reference semantics for
 * random patterns and inputs, linear work on adversarial inputs (counted steps, no clock),
 * sound coverage for attenuation, and dot-segment detection.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  compileGlob,
  globCovers,
  globMatch,
  globMatchCounted,
  hasDotSegment,
} from '../../../src/policy/glob';
import { backtrackingSteps, member, refGlob } from './glob-reference';

const pattern = (max: number) => fc.stringMatching(new RegExp(`^[a/_.*]{1,${max}}$`));
const input = (max: number) => fc.stringMatching(new RegExp(`^[a/_.*]{0,${max}}$`));
const filler = fc.array(fc.stringMatching(/^[a/_.]{0,4}$/), { maxLength: 6 });
const skips = fc.array(fc.boolean(), { maxLength: 6 });

/** Every engine the matcher has, on one (pattern, input). */
function allEngines(p: string, s: string, paths: boolean): [boolean, boolean, boolean] {
  const g = compileGlob(p, paths);
  return [globMatch(g, s), globMatchCounted(g, s).matched, globMatchCounted(g, s, 'nfa').matched];
}

describe('policy/glob', () => {
  describe('matching', () => {
    it('a table of the path convention', () => {
      const table: [string, string, boolean][] = [
        ['public/*', 'public/a.txt', true],
        ['public/*', 'public/a/b.txt', false],
        ['public/*', 'public/', true],
        ['public/*', 'public', false],
        ['public/**', 'public/a/b.txt', true],
        ['public/**', 'public/', true],
        ['public/**', 'public', false],
        ['a/**/b', 'a/b', true],
        ['a/**/b', 'a/x/b', true],
        ['a/**/b', 'a/x/y/b', true],
        ['a/**/b', 'a/xb', false],
        ['a/**/b', 'ab', false],
        ['**/b', 'b', true],
        ['**/b', 'x/y/b', true],
        ['**/b', 'xb', false],
        ['a**b', 'a/x/b', true],
        ['a**b', 'ab', true],
        ['docs/**/*.pdf', 'docs/r.pdf', true],
        ['docs/**/*.pdf', 'docs/2024/q1/r.pdf', true],
        ['docs/**/*.pdf', 'docs/2024/q1/r.pdfx', false],
        ['docs/**/*.pdf', 'docs/a.pdf/b', false],
        ['*/*', 'a/b', true],
        ['*/*', 'a/b/c', false],
        ['*', 'a', true],
        ['*', 'a/b', false],
        ['**', 'a/b', true],
        ['***', 'a/b', true],
        ['x/***/y', 'x/y', true],
        ['/srv/*.csv', '/srv/a.csv', true],
        ['/srv/*.csv', '/srv/a/b.csv', false],
        ['template_*_receipt', 'template_en_receipt', true],
        ['template_*_receipt', 'template_en/x_receipt', false],
        ['a*b*c', 'a\nb\nc', true],
      ];
      for (const [p, s, want] of table) {
        assert.equal(refGlob(p, s, true), want, `reference: ${p} ${s}`);
        assert.deepEqual(allEngines(p, s, true), [want, want, want], `${p} ${JSON.stringify(s)}`);
      }
      // Verb and type parts: every run of `*` is any run (no '/' reaches them anyway).
      assert.deepEqual(allEngines('*', 'a/b', false), [true, true, true]);
      assert.deepEqual(allEngines('cust*', 'customer_profile', false), [true, true, true]);
    });

    it('property: every engine agrees with the reference (paths and parts)', () => {
      fc.assert(
        fc.property(pattern(8), input(10), fc.boolean(), (p, s, paths) => {
          const want = refGlob(p, s, paths);
          assert.deepEqual(allEngines(p, s, paths), [want, want, want], `${p} ${JSON.stringify(s)} ${paths}`);
        }),
        { numRuns: 20_000 },
      );
    });

    it('property: every engine agrees on members of the pattern and near misses', () => {
      fc.assert(
        fc.property(pattern(10), filler, skips, fc.nat(), input(2), (p, fill, skip, at, noise) => {
          const s = member(p, true, fill, skip);
          assert.ok(refGlob(p, s, true), `member ${JSON.stringify(s)} of ${p}`);
          assert.deepEqual(allEngines(p, s, true), [true, true, true], `${p} ${JSON.stringify(s)}`);
          const i = s.length === 0 ? 0 : at % (s.length + 1);
          const miss = s.slice(0, i) + noise + s.slice(i + 1);
          const want = refGlob(p, miss, true);
          assert.deepEqual(allEngines(p, miss, true), [want, want, want], `${p} ${JSON.stringify(miss)}`);
        }),
        { numRuns: 10_000 },
      );
    });

    it('property: long patterns (more states than one word of bits) agree too', () => {
      const seg = fc.oneof(
        fc.stringMatching(/^[a_.]{1,6}$/),
        fc.constantFrom('*', '**', 'a*', '*_', '*.*', 'a*a*a'),
      );
      fc.assert(
        fc.property(
          fc.array(seg, { minLength: 6, maxLength: 14 }),
          filler,
          skips,
          input(3),
          (segs, fill, skip, noise) => {
            const p = segs.join('/');
            const g = compileGlob(p, true);
            const s = member(p, true, fill, skip);
            for (const x of [s, s + noise, noise + s, s.replace(/a/, noise)]) {
              const want = refGlob(p, x, true);
              assert.equal(globMatch(g, x), want, `${p} ${JSON.stringify(x)}`);
              assert.equal(globMatchCounted(g, x, 'nfa').matched, want, `nfa ${p} ${JSON.stringify(x)}`);
            }
          },
        ),
        { numRuns: 1500 },
      );
    });
    it('middles either side of 31 states (one word of bits) agree', () => {
      for (let k = 14; k <= 17; k++) {
        for (const p of [
          'x' + '*a'.repeat(k) + '*y',
          'x**/' + 'a*/'.repeat(k - 4) + '**/a*y',
          'x*' + 'a'.repeat(2 * k) + '*y',
        ]) {
          const g = compileGlob(p, true);
          fc.assert(
            fc.property(filler, skips, input(3), (fill, skip, noise) => {
              const s = member(p, true, fill, skip);
              for (const x of [s, s.replace(/a/, noise), s.slice(0, -1) + noise + 'y']) {
                const want = refGlob(p, x, true);
                assert.equal(globMatch(g, x), want, `${p} ${JSON.stringify(x)}`);
                assert.equal(globMatchCounted(g, x, 'nfa').matched, want, `nfa ${p} ${JSON.stringify(x)}`);
              }
            }),
            { numRuns: 100 },
          );
        }
      }
    });
  });

  describe('linear work (counted steps, no clock)', () => {
    const sizes = [1000, 5000, 10_000];
    const cases: { p: string; input: (n: number) => string; list?: boolean }[] = [
      { p: '*_*_*_*.pdf', input: (n) => '_'.repeat(n) },
      { p: '*_*_*_*.pdf', input: (n) => '_'.repeat(n - 4) + '.pdf' },
      { p: '*_*_*_*.pdf', input: (n) => '_'.repeat(n - 5) + '_.pdf' },
      { p: 'a*a*a*a*a*b', input: (n) => 'a'.repeat(n) },
      { p: 'a*a*a*a*a*b', input: (n) => 'a'.repeat(n - 1) + 'b' },
      { p: '**/**/**/**/x', input: (n) => '/'.repeat(n) },
      { p: '**/**/**/**/x', input: (n) => 'a/'.repeat(n / 2 - 1) + 'ax' },
      { p: 'a**a**a**a**b', input: (n) => 'a'.repeat(n - 1) + 'c' },
      { p: 'x/**/a*a*a*/**/**.y', input: (n) => 'x/' + 'a/'.repeat(n / 2 - 4) + 'aaa/.y' },
      // More states than one word: the state-list NFA serves globMatch too.
      { p: '*a'.repeat(24) + 'b', input: (n) => 'a'.repeat(n - 1) + 'b', list: true },
      { p: '*a'.repeat(24) + 'b', input: (n) => 'a'.repeat(n - 2) + 'cb', list: true },
    ];

    for (const { p, input, list } of cases) {
      const label = `${p.length > 24 ? p.slice(0, 24) + '…' : p} on ${JSON.stringify(input(20))}…`;
      it(`${label}: steps <= c·n, and no more work per character as the input grows`, () => {
        const g = compileGlob(p, true);
        assert.equal(g.bits === undefined, list === true, 'the engine globMatch uses');
        // Per character: each live state once, each added state once (at most 2 per
        // state), or one word step plus the epsilon closure (at most one per state).
        const c = 2 * (p.length + 2);
        for (const engine of ['auto', 'nfa'] as const) {
          const steps = sizes.map((n) => {
            const s = input(n);
            assert.equal(s.length, n);
            const r = globMatchCounted(g, s, engine);
            assert.equal(r.matched, globMatch(g, s));
            assert.ok(r.steps <= c * (n + 1), `${engine}: ${r.steps} steps for n=${n} > ${c}·(n+1)`);
            return r.steps;
          });
          // Linear work is a·n + b: the 5k→10k stretch costs no more per character than
          // the 1k→5k stretch (a super-linear matcher's cost per character keeps growing).
          const [s1, s5, s10] = steps as [number, number, number];
          assert.ok(4 * (s10 - s5) <= 5 * (s5 - s1), `${engine}: 1k → ${s1}, 5k → ${s5}, 10k → ${s10}`);
        }
        // The state-list NFA really runs over the whole input: work grows with it.
        const full = sizes.map((n) => globMatchCounted(g, input(n), 'nfa').steps);
        assert.ok(full[2]! >= 9 * full[0]!, `nfa steps ${full.join(', ')}`);
      });
    }

    it('the same check catches a backtracking matcher (the old RegExp behaviour)', () => {
      const [s1, s5, s10] = [10, 50, 100].map((n) => backtrackingSteps('*_*_*_*.pdf', '_'.repeat(n)));
      assert.ok(4 * (s10! - s5!) > 5 * (s5! - s1!), `backtracking: ${s1}, ${s5}, ${s10}`);
      const c = 2 * ('*_*_*_*.pdf'.length + 2);
      assert.ok(s10! > c * 101, `and it breaks the c·n bound: ${s10} > ${c}·101`);
    });
  });

  describe('coverage (attenuation)', () => {
    it('a table: covered pairs are recognised, uncovered ones never are', () => {
      const yes: [string, string][] = [
        ['**', 'a/*/b'],
        ['**', '**'],
        ['*', 'a*'],
        ['a/**', 'a/*'],
        ['a/**', 'a/**/b'],
        ['a/**', 'a/x/y'],
        ['a/**/b', 'a/b'],
        ['a/**/b', 'a/x/b'],
        ['a/**/b', 'a/*/b'],
        ['a/**/b', 'a/x/**/b'],
        ['a/**/b', 'a/**/**/b'],
        ['**/x', 'a/**/x'],
        ['**/x', '**/x'],
        ['**/*.pdf', 'a/**/*.pdf'],
        ['a/*.pdf', 'a/x*.pdf'],
        ['*a*', 'b*a*c'],
        ['a**', 'a*/b*'],
      ];
      const no: [string, string][] = [
        ['a/*', 'a/**'],
        ['*', '**'],
        ['*', 'a/b'],
        ['a/*', 'a/*/b'],
        ['a/**/b', 'a/**'],
        ['a/**/b', 'a/**b'],
        ['**/x', '**x'],
        ['a/b', 'a/**/b'],
        ['a/*/b', 'a/**/b'],
        ['ab*', 'a*'],
        ['a', '*'],
      ];
      for (const [o, i] of yes) assert.equal(globCovers(o, i, true), true, `${o} ⊇ ${i}`);
      for (const [o, i] of no) assert.equal(globCovers(o, i, true), false, `${o} ⊉ ${i}`);
      // Without paths (verb, type) `*` and `**` are the same.
      assert.equal(globCovers('*', '**', false), true);
      assert.equal(globCovers('re*', 'read*', false), true);
    });

    it('property: covers(outer, inner) only when every member of inner matches outer', () => {
      fc.assert(
        fc.property(
          pattern(7),
          pattern(7),
          fc.array(fc.tuple(filler, skips), { minLength: 10, maxLength: 20 }),
          fc.array(input(8), { maxLength: 10 }),
          fc.boolean(),
          (outer, innerRandom, fills, strings, paths) => {
            // A random inner, and one narrowed from outer (each * -> a*): often covered.
            for (const inner of [innerRandom, outer.replace(/\*+/g, (m) => 'a' + m)]) {
              if (!globCovers(outer, inner, paths)) continue;
              const samples = [...fills.map(([f, k]) => member(inner, paths, f, k)), ...strings];
              for (const s of samples) {
                if (!refGlob(inner, s, paths)) continue;
                assert.ok(refGlob(outer, s, paths), `${outer} ⊇ ${inner} claimed, but ${JSON.stringify(s)}`);
              }
            }
          },
        ),
        { numRuns: 5000 },
      );
    });
  });

  it('hasDotSegment: "." and ".." segments, nothing else', () => {
    const dot = [
      '.',
      '..',
      './a',
      '../a',
      'a/.',
      'a/..',
      'a/./b',
      'a/../b',
      'public/../secret/key',
      '/..',
      '//./',
    ];
    const fine = [
      '',
      'a',
      '/',
      'a//b',
      '/a/',
      'v1.2',
      '.env',
      'a/.env',
      '...',
      'a/.../b',
      'a..b',
      'a/b.',
      '.a.',
      'x..',
    ];
    for (const s of dot) assert.equal(hasDotSegment(s), true, s);
    for (const s of fine) assert.equal(hasDotSegment(s), false, s);
    fc.assert(
      fc.property(input(12), (s) => {
        assert.equal(
          hasDotSegment(s),
          s.split('/').some((x) => x === '.' || x === '..'),
          s,
        );
      }),
      { numRuns: 5000 },
    );
  });
});
