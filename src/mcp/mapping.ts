/**
 * MCP ⇄ ACT: how a tool call (or a resource read, a prompt get) becomes the action, resource and
 * context of one check. Pure.
 *
 * - action: the tool's configured action, else `call:<server>.<tool>` with the name sanitised to
 *   the action grammar (lower case, [a-z0-9_.-], at most 64 characters: longer names keep 55 and
 *   add a hash);
 * - resource: the argument the rule's JSON pointer names (a string or number), else "";
 * - context: `{ mcp: { server, tool }, arguments, arguments_sha256 }` — the selected arguments
 *   (all by default) with the redacted ones replaced by "[redacted]", and the SHA-256 of the
 *   canonical JSON of all arguments as sent. Approvals bind the context's hash, so a grant is
 *   bound to the exact arguments, also those not copied into the context.
 */
import { createHash } from 'node:crypto';
import { canonicalJson } from '../common/request-hash';
import type { ToolRule } from './config';
import { getAt, replaceAt, setAt } from './pointer';

/** What a redacted argument reads as in the check context and the audit record. */
export const REDACTED = '[redacted]';
/** Strings longer than this are shortened in the context (the hash still covers them). */
export const MAX_CONTEXT_STRING = 1024;

const TYPE_MAX = 64;

/** A name in the action grammar's resource-type alphabet. */
export function sanitizeName(name: string): string {
  const s = name.toLowerCase().replace(/[^a-z0-9_.-]/g, '_');
  if (s.length <= TYPE_MAX) return s;
  const h = createHash('sha256').update(name).digest('hex').slice(0, 8);
  return `${s.slice(0, TYPE_MAX - 9)}-${h}`;
}

/** The action of a tool without an explicit one. */
export function defaultToolAction(server: string, tool: string): string {
  return `call:${sanitizeName(`${server}.${tool}`)}`;
}

/** The action a tool's calls are checked as. */
export function toolAction(server: string, tool: string, rule: ToolRule): string {
  return rule.action ?? defaultToolAction(server, tool);
}

export interface CheckParts {
  action: string;
  resource: string;
  context: Record<string, unknown>;
}

/** The check of one tools/call. */
export function toolCheck(
  server: string,
  tool: string,
  rule: ToolRule,
  args: Record<string, unknown>,
): CheckParts {
  return {
    action: toolAction(server, tool, rule),
    resource: resourceOf(args, rule),
    context: {
      mcp: { server, tool },
      arguments: contextArguments(args, rule),
      arguments_sha256: argumentsHash(args),
    },
  };
}

/** The check of one prompts/get (prompt arguments are strings). */
export function promptCheck(
  server: string,
  prompt: string,
  action: string,
  args: Record<string, unknown>,
): CheckParts {
  return {
    action,
    resource: `${server}.${prompt}`,
    context: {
      mcp: { server, prompt },
      arguments: shorten(copy(args)),
      arguments_sha256: argumentsHash(args),
    },
  };
}

/** The check of one resources/read: the URI is the resource. */
export function resourceCheck(server: string, uri: string, action: string): CheckParts {
  return { action, resource: uri, context: { mcp: { server, uri } } };
}

export function argumentsHash(args: Record<string, unknown>): string {
  return createHash('sha256').update(canonicalJson(args), 'utf8').digest('hex');
}

function resourceOf(args: Record<string, unknown>, rule: ToolRule): string {
  if (rule.resource === undefined) return '';
  const v = getAt(args, rule.resource.pointer);
  if (typeof v === 'string') return v;
  if (typeof v === 'number' && Number.isFinite(v)) return String(v);
  return '';
}

function contextArguments(args: Record<string, unknown>, rule: ToolRule): Record<string, unknown> {
  let out: Record<string, unknown>;
  if (rule.context === 'none') return {};
  if (rule.context === 'all') out = copy(args);
  else {
    out = {};
    for (const p of rule.context) {
      const v = getAt(args, p);
      if (v !== undefined) setAt(out, p, copy(v));
    }
  }
  for (const p of rule.redact) replaceAt(out, p, REDACTED);
  return shorten(out) as Record<string, unknown>;
}

/** A deep copy of JSON data (arguments arrive as parsed JSON); keys defined, never assigned. */
function copy<T>(v: T): T {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(copy) as T;
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(v))
    Object.defineProperty(out, k, {
      value: copy((v as Record<string, unknown>)[k]),
      enumerable: true,
      writable: true,
      configurable: true,
    });
  return out as T;
}

/** Long strings become "[N characters omitted]"; the context stays small, the hash binds them. */
function shorten(v: unknown): unknown {
  if (typeof v === 'string') return v.length > MAX_CONTEXT_STRING ? `[${v.length} characters omitted]` : v;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) v[i] = shorten(v[i]);
    return v;
  }
  if (typeof v === 'object' && v !== null) {
    const o = v as Record<string, unknown>;
    for (const k of Object.keys(o))
      Object.defineProperty(o, k, {
        value: shorten(o[k]),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return o;
  }
  return v;
}
