/**
 * What every command's action gets: the output, the resolved connection and an
 * API client, built lazily so `--help` and usage errors never read the config.
 */
import { InvalidArgumentError, type Command } from 'commander';
import { duration } from '../common/options';
import { ApiClient } from './client';
import { parseBaseUrl, resolveConnection, type Connection, isExposed } from './config';
import { UsageError } from './errors';
import { Output } from './output';

/** The global options (`act --help`). */
export interface GlobalOptions {
  url?: string;
  key?: string;
  config?: string;
  json?: boolean;
  quiet?: boolean;
}

export class Ctx {
  readonly out: Output;
  private connection: Connection | undefined;

  constructor(
    readonly cmd: Command,
    readonly env: NodeJS.ProcessEnv,
  ) {
    const g = cmd.optsWithGlobals<GlobalOptions>();
    this.out = new Output({ json: Boolean(g.json), quiet: Boolean(g.quiet) });
  }

  get globals(): GlobalOptions {
    return this.cmd.optsWithGlobals<GlobalOptions>();
  }

  /** The control plane's URL and key: flags > env > config file > default. */
  conn(): Connection {
    if (!this.connection) {
      this.connection = resolveConnection(this.globals, this.env);
      if (this.connection.keyFrom?.startsWith('key in ') && isExposed(this.connection.configPath))
        this.out.note(
          `act: warning: ${this.connection.configPath} holds an API key and other users can read it; chmod 600 it`,
        );
    }
    return this.connection;
  }

  /** A client for the control plane. */
  api(): ApiClient {
    return new ApiClient(this.conn());
  }

  /** A client for a sidecar's loopback REST API (no key). */
  sidecar(raw: string, from: string): ApiClient {
    const url = parseBaseUrl(raw, from);
    return new ApiClient(
      { url, urlFrom: from, key: undefined, keyFrom: undefined, configPath: '' },
      'sidecar',
    );
  }
}

// ---- option value parsers (commander turns InvalidArgumentError into a usage error) ----

/** Repeatable option: `--capability a --capability b`, also `--capability a,b`. */
export function list(value: string, previous: string[] | undefined): string[] {
  const parts = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return [...(previous ?? []), ...parts];
}

/** Repeatable option that keeps commas (CEL expressions). */
export function repeat(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** Repeatable `key=value`; values stay strings (metadata is string to string). */
export function keyValue(
  value: string,
  previous: Record<string, string> | undefined,
): Record<string, string> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got ${JSON.stringify(value)}`);
  return { ...(previous ?? {}), [value.slice(0, eq)]: value.slice(eq + 1) };
}

/** Repeatable `key=value` for a check's context: a value that is JSON (5000, true, [..]) is parsed. */
export function contextValue(
  value: string,
  previous: Record<string, unknown> | undefined,
): Record<string, unknown> {
  const eq = value.indexOf('=');
  if (eq <= 0) throw new InvalidArgumentError(`expected key=value, got ${JSON.stringify(value)}`);
  const raw = value.slice(eq + 1);
  let v: unknown = raw;
  try {
    v = JSON.parse(raw);
  } catch {
    // a plain string
  }
  return { ...(previous ?? {}), [value.slice(0, eq)]: v };
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

/** "500ms", "30s", "5m", "24h", "30d". */
export function durationArg(value: string): string {
  try {
    duration(value, 'value');
  } catch {
    throw new InvalidArgumentError('expected a duration such as 500ms, 30s, 5m, 24h or 30d');
  }
  return value;
}

export function durationMs(value: string): number {
  return duration(value, 'value');
}

/** An RFC 3339 time, or a duration meaning that long ago ("1h" = an hour ago). */
export function timeArg(value: string): string {
  if (/^\d+(ms|s|m|h|d)$/.test(value)) return new Date(Date.now() - duration(value, 'value')).toISOString();
  if (Number.isNaN(Date.parse(value)) || !/^\d{4}-\d{2}-\d{2}/.test(value))
    throw new InvalidArgumentError(
      'expected an RFC 3339 time (2026-01-31T09:00:00Z) or a duration ago (1h, 7d)',
    );
  return value;
}

/** A JSON object given on the command line. */
export function jsonObject(value: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new InvalidArgumentError('expected a JSON object such as {"ip":"10.0.1.50"}');
  return v as Record<string, unknown>;
}

/** Throws the usage error for a missing required option (checked after unknown options). */
export function required<T>(v: T | undefined, flag: string): T {
  if (v === undefined || (Array.isArray(v) && v.length === 0))
    throw new UsageError(`missing required option ${flag}`);
  return v;
}

/** Path segment for an id from the command line. */
export function seg(id: string): string {
  return encodeURIComponent(id);
}

/** What a command module gets to define its verbs (built by program.ts). */
export interface Kit {
  /** Wraps a verb's handler: builds the context, records the exit code. */
  action<A extends unknown[]>(
    fn: (c: Ctx, ...args: A) => Promise<number | void>,
  ): (...args: unknown[]) => Promise<void>;
}
