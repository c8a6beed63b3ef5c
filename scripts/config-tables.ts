/**
 * Prints the README's configuration tables from the option specs (the same source as
 * `--help`): `npx tsx scripts/config-tables.ts`. The CLI test checks the README names every
 * environment variable.
 */
import { CONTROL_PLANE_OPTIONS } from '../src/control-plane/config';
import { SIDECAR_OPTIONS } from '../src/sidecar/config';
import type { Specs } from '../src/common/options';

function table(specs: Specs): string {
  const rows = Object.values(specs).map((s) => [
    `\`${s.env}\``,
    `\`${s.flag}\``,
    s.default === undefined || s.default === '' ? '—' : `\`${s.default}\``,
    s.help.replace(/\|/g, '\\|').replace(/</g, '&lt;'),
  ]);
  const head = ['env', 'flag', 'default', 'what'];
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]) => `| ${r.map((c, i) => c.padEnd(w[i]!)).join(' | ')} |`;
  return [line(head), `| ${w.map((n) => '-'.repeat(n)).join(' | ')} |`, ...rows.map(line)].join('\n');
}

process.stdout.write(
  `### Control plane (\`act control-plane\`)\n\n${table(CONTROL_PLANE_OPTIONS)}\n\n### Sidecar (\`act sidecar\`)\n\n${table(SIDECAR_OPTIONS)}\n`,
);
