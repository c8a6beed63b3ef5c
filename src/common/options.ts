/**
 * Declarative process options: each has a flag, an environment variable, a
 * default and a parser. `--help` is rendered from the same table, so the help,
 * the flags and the env vars cannot drift apart. All errors are reported together.
 */
export interface OptionSpec<T> {
  flag: string; // e.g. "--http-addr"
  env: string; // e.g. "ACT_HTTP_ADDR"
  help: string;
  default: string | undefined;
  parse: (raw: string, name: string) => T;
  /** Hide the value in logs (keys). */
  secret?: boolean;
}

export type Specs = Record<string, OptionSpec<unknown>>;
export type Values<S extends Specs> = { [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration:\n  - ${problems.join('\n  - ')}`);
  }
}

export function parseOptions<S extends Specs>(specs: S, argv: string[], env: NodeJS.ProcessEnv): Values<S> {
  const problems: string[] = [];
  const byFlag = new Map(Object.entries(specs).map(([k, s]) => [s.flag, k]));
  const raw: Record<string, string | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const key = byFlag.get(flag);
    if (key === undefined) {
      problems.push(`unknown option ${flag}`);
      continue;
    }
    const v = eq > 0 ? a.slice(eq + 1) : argv[++i];
    if (v === undefined) problems.push(`${flag} needs a value`);
    else raw[key] = v;
  }
  const out: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    // An empty environment variable (`ACT_X=` in a manifest) counts as unset.
    const v = raw[key] ?? (env[spec.env] === '' ? undefined : env[spec.env]) ?? spec.default;
    if (v === undefined) {
      out[key] = undefined;
      continue;
    }
    try {
      out[key] = spec.parse(v, `${spec.flag} / ${spec.env}`);
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return out as Values<S>;
}

export function renderHelp(usage: string, summary: string, specs: Specs): string {
  const lines = [
    `Usage: ${usage}`,
    '',
    summary,
    '',
    'Options (each flag can also be set by its environment variable):',
  ];
  for (const s of Object.values(specs)) {
    const def = s.secret ? '' : s.default === undefined ? '' : ` (default: ${s.default})`;
    lines.push(`  ${s.flag.padEnd(26)} ${s.env}`);
    lines.push(`  ${''.padEnd(26)} ${s.help}${def}`);
  }
  lines.push('  --help                     show this help');
  return lines.join('\n') + '\n';
}

// ---- parsers ----

export interface HostPort {
  host: string;
  port: number;
}

export function parseHostPort(raw: string, name: string): HostPort {
  const m = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(raw.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535)
    throw new Error(`${name}: expected host:port such as 127.0.0.1:8700, got ${JSON.stringify(raw)}`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

export const str = (raw: string): string => raw;

export function positiveInt(raw: string, name: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0)
    throw new Error(`${name}: expected a positive integer, got ${JSON.stringify(raw)}`);
  return n;
}

/** "500ms", "30s", "5m", "24h", "365d" → milliseconds. */
export function duration(raw: string, name: string): number {
  const m = /^(\d+)(ms|s|m|h|d)$/.exec(raw.trim());
  if (!m)
    throw new Error(
      `${name}: expected a duration such as 500ms, 30s, 5m, 24h or 365d, got ${JSON.stringify(raw)}`,
    );
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    m[2] as 'ms' | 's' | 'm' | 'h' | 'd'
  ];
  return Number(m[1]) * unit;
}

export function oneOf<T extends string>(values: readonly T[]) {
  return (raw: string, name: string): T => {
    if (!(values as readonly string[]).includes(raw))
      throw new Error(`${name}: expected one of ${values.join(', ')}, got ${JSON.stringify(raw)}`);
    return raw as T;
  };
}

/** --log-level / ACT_LOG_LEVEL, shared by every process. */
export const LOG_LEVEL_OPTION = {
  flag: '--log-level',
  env: 'ACT_LOG_LEVEL',
  default: 'info',
  parse: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const),
  help: 'pino log level',
};
