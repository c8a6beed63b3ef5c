/**
 * Import rules from STYLE.md, checked by scanning src/ as text:
 * - the pure core (src/decision, src/policy, src/token) imports no I/O or process
 *   libraries (lmdb, @grpc/*, pino, fs, net, http, child_process), depends only on
 *   itself, src/common and src/gen, and never reads the clock (`Date.now()`,
 *   argument-less `new Date()`, `performance.now()`, `process.hrtime`);
 * - src/sdk (once it exists) reaches into src/ only for src/gen and src/common.
 * Comments are stripped before scanning, so a rule may be mentioned in a comment.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

const SRC = path.resolve(__dirname, '../../../src');
const CORE = ['decision', 'policy', 'token'];

const FORBIDDEN_MODULES: { name: string; test: (spec: string) => boolean }[] = [
  { name: 'lmdb', test: (s) => s === 'lmdb' || s.startsWith('lmdb/') },
  { name: '@grpc/*', test: (s) => s.startsWith('@grpc/') },
  { name: 'pino', test: (s) => s === 'pino' || s.startsWith('pino/') || s.startsWith('pino-') },
  ...['fs', 'fs/promises', 'net', 'http', 'https', 'http2', 'child_process'].map((m) => ({
    name: `node:${m}`,
    test: (s: string) => s === m || s === `node:${m}`,
  })),
];

const CLOCK_READS: { name: string; re: RegExp }[] = [
  { name: 'Date.now()', re: /\bDate\s*\.\s*now\s*\(/ },
  // `new Date(x)` converts a given time; `new Date()` and `new Date` read the clock.
  { name: 'new Date()', re: /\bnew\s+Date\s*(?:\(\s*\)|(?![\s(]))/ },
  { name: 'performance.now()', re: /\bperformance\s*\.\s*now\s*\(/ },
  { name: 'process.hrtime', re: /\bprocess\s*\.\s*hrtime\b/ },
];

/**
 * Blanks out comments, keeping line numbers. Quoted strings are kept (import specifiers
 * live in them) unless `blankStrings`; template literals are always kept, since their
 * `${}` parts are code (their nesting is not parsed).
 */
export function stripComments(source: string, blankStrings = false): string {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    const next = source[i + 1];
    if (c === '/' && next === '/') {
      while (i < source.length && source[i] !== '\n') i++;
    } else if (c === '/' && next === '*') {
      const end = source.indexOf('*/', i + 2);
      const stop = end === -1 ? source.length : end + 2;
      out += source.slice(i, stop).replace(/[^\n]/g, ' ');
      i = stop;
    } else if (c === '"' || c === "'" || c === '`') {
      let j = i + 1;
      while (j < source.length && source[j] !== c) {
        if (source[j] === '\\') j++;
        else if (c !== '`' && source[j] === '\n') break; // unterminated: stop at the line end
        j++;
      }
      const literal = source.slice(i, j + 1);
      out += blankStrings && c !== '`' ? literal.replace(/[^\n]/g, ' ') : literal;
      i = j + 1;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Every module specifier a file names (import/export … from, side-effect imports, require(), import()) and its line. */
export function importsOf(code: string): { spec: string; line: number }[] {
  const re = /(?:\bfrom|\bimport|\brequire\s*\(|\bimport\s*\()\s*(['"])([^'"\n]+)\1/g;
  return [...code.matchAll(re)].map((m) => ({ spec: m[2]!, line: lineOf(code, m.index) }));
}

export interface Violation {
  file: string;
  line: number;
  rule: string;
}

function lineOf(code: string, index: number): number {
  return code.slice(0, index).split('\n').length;
}

/** Pure-core violations in one file's source (`file` is only used in the report). */
export function scanCoreSource(file: string, source: string): Violation[] {
  const code = stripComments(source);
  const out: Violation[] = [];
  for (const { spec, line } of importsOf(code)) {
    for (const f of FORBIDDEN_MODULES) if (f.test(spec)) out.push({ file, line, rule: `imports ${f.name}` });
    if (spec.startsWith('.')) {
      const target = path.relative(SRC, path.resolve(path.dirname(path.join(SRC, file)), spec));
      const layer = target.split(path.sep)[0]!;
      if (target.startsWith('..') || ![...CORE, 'common', 'gen'].includes(layer)) {
        out.push({ file, line, rule: `imports ${spec} (outside the core, common and gen)` });
      }
    }
  }
  const bare = stripComments(source, true);
  for (const { name, re: clock } of CLOCK_READS) {
    for (const m of bare.matchAll(new RegExp(clock.source, 'g'))) {
      out.push({ file, line: lineOf(bare, m.index), rule: `reads the clock (${name})` });
    }
  }
  return out;
}

/** SDK violations: relative imports that land in src/ outside src/sdk, src/gen and src/common. */
export function scanSdkSource(file: string, source: string): Violation[] {
  const out: Violation[] = [];
  const code = stripComments(source);
  for (const { spec, line } of importsOf(code)) {
    if (!spec.startsWith('.')) continue;
    const target = path.relative(SRC, path.resolve(path.dirname(path.join(SRC, file)), spec));
    const layer = target.split(path.sep)[0]!;
    if (target.startsWith('..') || !['sdk', 'gen', 'common'].includes(layer)) {
      out.push({ file, line, rule: `imports ${spec} (sdk may use only src/gen and src/common)` });
    }
  }
  return out;
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = path.join(dir, name);
    if (statSync(full).isDirectory()) out.push(...tsFiles(full));
    else if (/\.[cm]?ts$/.test(name)) out.push(full);
  }
  return out;
}

const report = (vs: Violation[]): string => vs.map((v) => `  src/${v.file}:${v.line} ${v.rule}`).join('\n');

describe('architecture: import rules (STYLE.md)', () => {
  describe('the scanner itself', () => {
    it('flags forbidden imports, outward imports and clock reads in a synthetic file', () => {
      const bad = [
        "import { open } from 'lmdb';",
        "import * as grpc from '@grpc/grpc-js';",
        "import pino from 'pino';",
        "import { readFileSync } from 'node:fs';",
        "import 'fs/promises';",
        "export { connect } from 'net';",
        "const http = require('node:http');",
        "const cp = await import('child_process');",
        "import { openLmdbStore } from '../store';",
        'const a = Date.now();',
        'const b = new Date();',
        'const c = new Date;',
        'const d = performance.now();',
        'const e = `at ${process.hrtime.bigint()}`;',
      ].join('\n');
      const rules = scanCoreSource('decision/synthetic.ts', bad).map((v) => `${v.line} ${v.rule}`);
      assert.deepEqual(rules, [
        '1 imports lmdb',
        '2 imports @grpc/*',
        '3 imports pino',
        '4 imports node:fs',
        '5 imports node:fs/promises',
        '6 imports node:net',
        '7 imports node:http',
        '8 imports node:child_process',
        '9 imports ../store (outside the core, common and gen)',
        '10 reads the clock (Date.now())',
        '11 reads the clock (new Date())',
        '12 reads the clock (new Date())',
        '13 reads the clock (performance.now())',
        '14 reads the clock (process.hrtime)',
      ]);
    });

    it('ignores comments, strings that are not imports, and clock conversions', () => {
      const ok = [
        '// import { open } from "lmdb"; Date.now()',
        '/* new Date() and performance.now() */',
        "import { sign } from 'node:crypto';",
        "import { invalid } from '../common/errors';",
        "import type { Policy } from '../gen/act/v1/admin';",
        "const url = 'http://example.com/a'; // not a comment start inside the string",
        'const t = new Date(claims.expires_at_ms).toISOString();',
        "const s = 'Date.now() in a string, new Date()'.length;",
      ].join('\n');
      assert.deepEqual(scanCoreSource('decision/synthetic.ts', ok), []);
    });

    it('flags an sdk import of an inner layer but not gen or common', () => {
      const src =
        "import { x } from '../gen/act/v1/token';\nimport { y } from '../common/errors';\nimport { decide } from '../decision';";
      assert.deepEqual(
        scanSdkSource('sdk/client.ts', src).map((v) => v.rule),
        ['imports ../decision (sdk may use only src/gen and src/common)'],
      );
    });
  });

  for (const layer of CORE) {
    it(`src/${layer} is pure: no I/O or process imports, only inward imports, no clock reads`, () => {
      const files = tsFiles(path.join(SRC, layer));
      assert.ok(files.length > 0, `no sources found under src/${layer}`);
      const violations = files.flatMap((f) => scanCoreSource(path.relative(SRC, f), readFileSync(f, 'utf8')));
      assert.deepEqual(violations, [], `pure-core violations:\n${report(violations)}`);
    });
  }

  it('src/sdk imports only src/gen and src/common', function () {
    const dir = path.join(SRC, 'sdk');
    if (!existsSync(dir)) this.skip(); // not written yet
    const violations = tsFiles(dir).flatMap((f) =>
      scanSdkSource(path.relative(SRC, f), readFileSync(f, 'utf8')),
    );
    assert.deepEqual(violations, [], `sdk violations:\n${report(violations)}`);
  });
});

/** Resolves a relative specifier of `from` to a file under src/, or undefined (packages, gen). */
function resolveLocal(from: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const base = path.resolve(path.dirname(from), spec);
  for (const c of [`${base}.ts`, path.join(base, 'index.ts')]) if (existsSync(c)) return c;
  return undefined;
}

/** An import cycle among src/ files (type-only imports count: a cycle is a layering smell either way), or undefined. */
export function findCycle(graph: Map<string, string[]>): string[] | undefined {
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (n: string): string[] | undefined => {
    state.set(n, 'open');
    stack.push(n);
    for (const m of graph.get(n) ?? []) {
      const s = state.get(m);
      if (s === 'open') return [...stack.slice(stack.indexOf(m)), m];
      if (s === undefined) {
        const c = visit(m);
        if (c) return c;
      }
    }
    stack.pop();
    state.set(n, 'done');
    return undefined;
  };
  for (const n of graph.keys()) {
    if (state.has(n)) continue;
    const c = visit(n);
    if (c) return c;
  }
  return undefined;
}

describe('no import cycles', () => {
  it('finds a cycle in a synthetic graph and none in a chain', () => {
    assert.deepEqual(
      findCycle(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', ['a']],
        ]),
      ),
      ['a', 'b', 'c', 'a'],
    );
    assert.equal(
      findCycle(
        new Map([
          ['a', ['b']],
          ['b', ['c']],
          ['c', []],
        ]),
      ),
      undefined,
    );
  });

  it('src/ (outside src/gen) has no import cycle', () => {
    const files = tsFiles(SRC).filter((f) => !f.includes(`${path.sep}gen${path.sep}`));
    assert.ok(files.length > 50);
    const graph = new Map<string, string[]>();
    for (const f of files) {
      const deps = importsOf(stripComments(readFileSync(f, 'utf8')))
        .map((i) => resolveLocal(f, i.spec))
        .filter((d): d is string => d !== undefined && !d.includes(`${path.sep}gen${path.sep}`));
      graph.set(f, deps);
    }
    const cycle = findCycle(graph);
    assert.equal(cycle, undefined, `import cycle: ${cycle?.map((c) => path.relative(SRC, c)).join(' -> ')}`);
  });
});
