/**
 * Where the CLI finds the control plane and its API key: flags, then the
 * environment (ACT_URL, ACT_KEY, ACT_ADMIN_KEY), then the config file that
 * `act login` writes (ACT_CONFIG, else $XDG_CONFIG_HOME/act/config.json, else
 * ~/.config/act/config.json; mode 0600 because it holds a key).
 */
import { chmodSync, mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from './errors';

/** The control plane's REST address when nothing else is set. */
export const DEFAULT_URL = 'http://127.0.0.1:8700';

/** What the config file holds. */
export interface CliConfigFile {
  /** Control-plane REST base URL. */
  url?: string;
  /** API key (a secret: the file is written with mode 0600). */
  key?: string;
}

/** The resolved control-plane address and key, with where each came from (for error messages). */
export interface Connection {
  url: string;
  urlFrom: string;
  key: string | undefined;
  keyFrom: string | undefined;
  configPath: string;
}

/** The config file's path: --config, ACT_CONFIG, $XDG_CONFIG_HOME/act/config.json, ~/.config/act/config.json. */
export function configPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  if (flag) return path.resolve(flag);
  if (env.ACT_CONFIG) return path.resolve(env.ACT_CONFIG);
  const base = env.XDG_CONFIG_HOME || path.join(env.HOME || os.homedir(), '.config');
  return path.join(base, 'act', 'config.json');
}

/** Reads the config file; a missing file is an empty config, a broken one a usage error. */
export function readConfig(file: string): CliConfigFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UsageError(`cannot read the config file ${file}: ${(err as Error).message}`);
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new UsageError(
      `the config file ${file} is not valid JSON (${(err as Error).message}); fix it or run act login again`,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new UsageError(`the config file ${file} must hold a JSON object such as {"url":"…","key":"…"}`);
  const o = v as Record<string, unknown>;
  for (const k of ['url', 'key'] as const)
    if (o[k] !== undefined && typeof o[k] !== 'string')
      throw new UsageError(`the config file ${file}: "${k}" must be a string`);
  return { url: o.url as string | undefined, key: o.key as string | undefined };
}

/** True when a file that holds a key can be read by other users (the CLI then warns). */
export function isExposed(file: string): boolean {
  try {
    return (statSync(file).mode & 0o077) !== 0;
  } catch {
    return false;
  }
}

/** Writes the config file atomically with mode 0600 (its directory 0700). */
export function writeConfig(file: string, cfg: CliConfigFile): void {
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(cfg, null, 2) + '\n', { mode: 0o600 });
  chmodSync(tmp, 0o600); // an existing umask or file mode must not widen it
  renameSync(tmp, file);
}

/**
 * Parses a control-plane (or sidecar) base URL. Only http: and https: URLs are
 * accepted: "127.0.0.1:8700" would otherwise fail later as "cannot reach", and
 * "localhost:8700" parses as a URL with the scheme "localhost:".
 */
export function parseBaseUrl(raw: string, from: string): string {
  const hint =
    /^[\w.-]+:\d+(\/.*)?$/.test(raw) || /^\[[0-9a-fA-F:]+\]:\d+/.test(raw)
      ? ` (did you mean http://${raw}?)`
      : '';
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    throw new UsageError(`${from}: ${JSON.stringify(raw)} is not a URL; expected http://host:port${hint}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new UsageError(`${from}: ${JSON.stringify(raw)} is not an http:// or https:// URL${hint}`);
  if (u.search || u.hash)
    throw new UsageError(`${from}: ${JSON.stringify(raw)} must not have a query or fragment`);
  if (u.username || u.password)
    throw new UsageError(`${from}: put the API key in --key/ACT_KEY, not in the URL`);
  return u.toString().replace(/\/+$/, '');
}

/** Flags > environment > config file > default. */
export function resolveConnection(
  flags: { url?: string | undefined; key?: string | undefined; config?: string | undefined },
  env: NodeJS.ProcessEnv,
  o: { readFile?: boolean } = {},
): Connection {
  const file = configPath(flags.config, env);
  const cfg = o.readFile === false ? {} : readConfig(file);
  const pick = (...c: [string | undefined, string][]): [string, string] | [undefined, undefined] => {
    for (const [v, from] of c) if (v !== undefined && v !== '') return [v, from];
    return [undefined, undefined];
  };
  const [rawUrl, urlFrom] = pick(
    [flags.url, '--url'],
    [env.ACT_URL, 'ACT_URL'],
    [cfg.url, `url in ${file}`],
    [DEFAULT_URL, 'the default URL'],
  ) as [string, string];
  const [key, keyFrom] = pick(
    [flags.key, '--key'],
    [env.ACT_KEY, 'ACT_KEY'],
    [env.ACT_ADMIN_KEY, 'ACT_ADMIN_KEY'],
    [cfg.key, `key in ${file}`],
  );
  return { url: parseBaseUrl(rawUrl, urlFrom), urlFrom, key, keyFrom, configPath: file };
}
