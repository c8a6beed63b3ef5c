/**
 * Bench runner (`npm run bench [-- --quick]`): runs every bench module in sequence,
 * prints a table per module and writes bench/RESULTS.md with the machine, the commit
 * and the tables. To add a bench, add one entry to MODULES.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import * as cel from './cel.bench';
import * as match from './match.bench';
import * as decide from './decide.bench';
import * as store from './store.bench';
import * as token from './token.bench';
import * as replica from './replica.bench';
import * as spool from './spool.bench';
import * as sidecar from './sidecar.bench';
import * as propagation from './propagation.bench';
import * as coldstart from './coldstart.bench';
import * as auditDrain from './audit-drain.bench';
import * as controlPlane from './control-plane.bench';
import * as mcp from './mcp.bench';

/**
 * How a module's numbers read. A rate (`ops/s`, `records/s`, …) gets a derived ns-per-item
 * column; `ns/op` gets a derived ops/s column; anything else (e.g. `µs` latencies) is shown as is.
 */
export type Unit = string;

export interface BenchModule {
  name: string;
  /** One sentence for RESULTS.md: what is measured and how. */
  describe: string;
  run: (opts: { quick: boolean }) => Promise<Record<string, number>>;
  /** The unit of every result, or per result key. */
  unit: Unit | ((key: string) => Unit);
  /** Extra lines under the table, e.g. a target's PASS/FAIL. */
  notes?: (results: Record<string, number>) => string[];
}

export const MODULES: BenchModule[] = [
  {
    name: 'decide',
    describe:
      'Warm decide() on one core, in-process: seed Customer Support Policy ALLOW (counters read, not applied), ' +
      'ALLOW with counters applied (limits raised), DENY (capability not granted), and a CEL approval rule that passes. ' +
      'Median of several timed rounds after a warm-up.',
    run: decide.run,
    unit: 'ops/s',
    notes: (r) => [decide.verdict(r)],
  },
  {
    name: 'token',
    describe:
      'Ed25519 token sign, uncached verify (node:crypto), VerificationCache hit, and tweetnacl verify for comparison.',
    run: token.run,
    unit: 'ops/s',
  },
  {
    name: 'cel',
    describe:
      'Policy hot-path pieces: capability matching, allowed-hours checks, CEL evaluation and compilation. Best of 5 rounds.',
    run: cel.run,
    unit: 'ns/op',
  },
  {
    name: 'match',
    describe: match.describe,
    run: match.run,
    unit: match.unit,
  },
  {
    name: 'store',
    describe:
      'Control-plane store, both engines in one run: LMDB in a temp dir and PostgreSQL on a throwaway local cluster ' +
      '(fsync and synchronous_commit on). Durable audit appends (LMDB, batches of 100/1000), audit ingest of sealed ' +
      'hash chains in batches of 500 (one source; on PostgreSQL also 4 sources at once), export, paged query, and ' +
      'admin writes (sequential single-row write transactions; on PostgreSQL also 3 replicas at once).',
    run: store.run,
    unit: store.unit,
    notes: store.notes,
  },
  {
    name: 'replica',
    describe:
      'Sidecar LMDB replica loaded by a snapshot of 100k agents, 100k revocations and 1k policies: snapshot apply, ' +
      'cold open to the first decide(), warm decide() against the replica, and memory.',
    run: replica.run,
    unit: (key) => (key.endsWith('_ms') ? 'ms' : key.endsWith('_mb') ? 'MB' : 'ops/s'),
  },
  {
    name: 'spool',
    describe: spool.describe,
    run: spool.run,
    unit: spool.unit,
  },
  // End to end: real `act` processes from dist/ (or ACT_BENCH_DIST); `npm run build` first.
  {
    name: 'sidecar',
    describe: sidecar.describe,
    run: sidecar.run,
    unit: sidecar.unit,
    notes: sidecar.notes,
  },
  {
    name: 'propagation',
    describe: propagation.describe,
    run: propagation.run,
    unit: propagation.unit,
    notes: propagation.notes,
  },
  {
    name: 'coldstart',
    describe: coldstart.describe,
    run: coldstart.run,
    unit: coldstart.unit,
    notes: coldstart.notes,
  },
  {
    name: 'audit-drain',
    describe: auditDrain.describe,
    run: auditDrain.run,
    unit: auditDrain.unit,
    notes: auditDrain.notes,
  },
  {
    name: 'control-plane',
    describe: controlPlane.describe,
    run: controlPlane.run,
    unit: controlPlane.unit,
    notes: (r) => [
      `export memory: RssAnon ${r['cp.rss_anon_before_export_mb']} MB before, peak ${r['cp.rss_anon_peak_during_export_mb']} MB while streaming ` +
        `${r['cp.export_records']} records (VmRSS also counts the LMDB file pages the export maps in; the kernel can drop those)`,
    ],
  },
  {
    name: 'mcp',
    describe: mcp.describe,
    run: mcp.run,
    unit: mcp.unit,
    notes: mcp.notes,
  },
];

export interface Section {
  module: BenchModule;
  results: Record<string, number>;
  seconds: number;
}

const fmt = (x: number, digits = 0): string =>
  x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

/** Table rows for a section: name, value, unit, and the derived other-way-round figure. */
export function tableRows(s: Section): string[][] {
  return Object.entries(s.results).map(([key, value]) => {
    const unit = typeof s.module.unit === 'function' ? s.module.unit(key) : s.module.unit;
    if (unit === 'ns/op') return [key, fmt(1e9 / value), 'ops/s', fmt(value, 1)];
    if (unit.endsWith('/s')) return [key, fmt(value), unit, value > 0 ? fmt(1e9 / value) : '—'];
    return [key, fmt(value, 1), unit, '—'];
  });
}

const HEADER = ['benchmark', 'rate', 'unit', 'ns per item'];

function printTable(s: Section): void {
  const rows = [HEADER, ...tableRows(s)];
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) {
    console.log(
      r.map((c, i) => (i === 0 || i === 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  '),
    );
  }
  for (const line of s.module.notes?.(s.results) ?? []) console.log(line);
}

function git(args: string[]): string {
  try {
    return execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
}

export interface Machine {
  cpu: string;
  cores: number;
  memoryGiB: number;
  /** 1-minute load average when the run started: other work on the machine skews the figures. */
  load: number;
  node: string;
  date: string;
  commit: string;
  command: string;
}

export function describeMachine(command: string): Machine {
  const commit = git(['rev-parse', '--short', 'HEAD']) || 'unknown';
  // Tracked files that differ from HEAD mean the figures are not exactly that commit's.
  const dirty = git(['status', '--porcelain', '--untracked-files=no']) !== '';
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    load: Math.round(os.loadavg()[0]! * 100) / 100,
    node: process.version,
    date: new Date().toISOString(),
    commit: dirty ? `${commit} (with uncommitted changes in the working tree)` : commit,
    command,
  };
}

/** A padded Markdown table (as Prettier would lay it out); columns 0 and 2 left-aligned, the rest right. */
function markdownTable(rows: string[][]): string[] {
  const right = (i: number) => i !== 0 && i !== 2;
  const widths = rows[0]!.map((_, i) => Math.max(3, ...rows.map((r) => r[i]!.length)));
  const cells = (r: string[]) =>
    `| ${r.map((c, i) => (right(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (right(i) ? '-'.repeat(w - 1) + ':' : '-'.repeat(w))).join(' | ')} |`;
  return [cells(rows[0]!), rule, ...rows.slice(1).map(cells)];
}

/** Renders RESULTS.md: the machine, then one section per module, in run order. */
export function renderResults(machine: Machine, sections: readonly Section[]): string {
  const lines = [
    '# Benchmark results',
    '',
    'Written by `bench/run.ts`; see bench/README.md for what each bench measures and how to read it.',
    '',
    `- machine: ${machine.cpu}, ${machine.cores} cores, ${machine.memoryGiB} GiB`,
    `- load average (1 min) at start: ${machine.load}`,
    `- node: ${machine.node}`,
    `- date: ${machine.date}`,
    `- commit: ${machine.commit}`,
    `- command: \`${machine.command}\``,
  ];
  for (const s of sections) {
    lines.push('', `## ${s.module.name}`, '', s.module.describe, '');
    lines.push(...markdownTable([HEADER, ...tableRows(s)]));
    const notes = s.module.notes?.(s.results) ?? [];
    if (notes.length > 0) lines.push('', ...notes.map((n) => `**${n}**`));
    lines.push('', `(${s.seconds.toFixed(1)} s)`);
  }
  return lines.join('\n') + '\n';
}

async function main(): Promise<void> {
  const quick = process.argv.includes('--quick');
  const command = quick ? 'npm run bench -- --quick' : 'npm run bench';
  const machine = describeMachine(command); // before the run: the load average is the machine's, not ours
  const sections: Section[] = [];
  for (const module of MODULES) {
    console.log(`\nrunning ${module.name}…`);
    const t0 = performance.now();
    const results = await module.run({ quick });
    const section = { module, results, seconds: (performance.now() - t0) / 1000 };
    sections.push(section);
    printTable(section);
  }
  const file = path.join(__dirname, 'RESULTS.md');
  writeFileSync(file, renderResults(machine, sections));
  console.log(`\nwrote ${path.relative(process.cwd(), file)}`);
}

if (require.main === module) {
  main().catch((e: unknown) => {
    console.error(e);
    process.exitCode = 1;
  });
}
