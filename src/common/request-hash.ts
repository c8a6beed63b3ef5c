/**
 * The binding of an approval to one request: SHA-256 (hex) over the canonical JSON of
 * {action, resource, context} — object keys sorted by code unit, no whitespace, numbers in
 * JavaScript's shortest form (so 1500 and 1500.0, from REST or from a protobuf Struct, bind
 * alike). The approver is shown exactly this context; any other context is another request.
 */
import { createHash } from 'node:crypto';

/** Canonical JSON: sorted keys, no whitespace, undefined members dropped (as JSON.stringify does). */
export function canonicalJson(v: unknown): string {
  if (v === null || typeof v !== 'object') {
    const s = JSON.stringify(v);
    return s === undefined ? 'null' : s;
  }
  if (Array.isArray(v)) return `[${v.map((x) => (x === undefined ? 'null' : canonicalJson(x))).join(',')}]`;
  const o = v as Record<string, unknown>;
  const parts: string[] = [];
  for (const k of Object.keys(o).sort()) {
    if (o[k] === undefined) continue;
    parts.push(`${JSON.stringify(k)}:${canonicalJson(o[k])}`);
  }
  return `{${parts.join(',')}}`;
}

export function requestHash(action: string, resource: string, context: Record<string, unknown>): string {
  return createHash('sha256')
    .update(canonicalJson({ action, resource, context: context ?? {} }), 'utf8')
    .digest('hex');
}
