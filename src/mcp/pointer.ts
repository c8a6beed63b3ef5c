/**
 * JSON Pointers (RFC 6901) into a tool call's arguments: where the resource comes from, which
 * arguments go into the check context, which are redacted in the audit record.
 */

/** A parsed pointer: its reference tokens ("" is the whole document, no tokens). */
export type Pointer = readonly string[];

/**
 * Parses "/a/b~1c" into ["a", "b/c"].
 * @throws Error with a message saying what is wrong (the caller names the field)
 */
export function parsePointer(text: string): Pointer {
  if (text === '') return [];
  if (!text.startsWith('/'))
    throw new Error(`${JSON.stringify(text)} is not a JSON pointer (it starts with /)`);
  return text
    .slice(1)
    .split('/')
    .map((t) => {
      if (/~(?![01])/.test(t)) throw new Error(`${JSON.stringify(text)} has a ~ not followed by 0 or 1`);
      return t.replace(/~1/g, '/').replace(/~0/g, '~');
    });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The value at `p`, or undefined when any step is missing. Own properties only. */
export function getAt(doc: unknown, p: Pointer): unknown {
  let v: unknown = doc;
  for (const t of p) {
    if (Array.isArray(v)) {
      if (!/^(0|[1-9]\d*)$/.test(t)) return undefined;
      v = v[Number(t)];
    } else if (isObject(v)) {
      if (!Object.prototype.hasOwnProperty.call(v, t)) return undefined;
      v = v[t];
    } else return undefined;
  }
  return v;
}

/**
 * Sets `value` at `p` in `doc` (a plain object), making intermediate objects as needed (array
 * indexes become object keys: the copy is for policy rules and the audit trail, not the tool).
 */
export function setAt(doc: Record<string, unknown>, p: Pointer, value: unknown): void {
  if (p.length === 0) return;
  let o = doc;
  for (let i = 0; i < p.length - 1; i++) {
    const t = p[i]!;
    const next = Object.prototype.hasOwnProperty.call(o, t) ? o[t] : undefined;
    if (!isObject(next)) {
      const made: Record<string, unknown> = {};
      define(o, t, made);
      o = made;
    } else o = next;
  }
  define(o, p[p.length - 1]!, value);
}

/** Replaces the value at `p` when it exists (arrays and objects alike); returns whether it did. */
export function replaceAt(doc: unknown, p: Pointer, value: unknown): boolean {
  if (p.length === 0) return false;
  const parent = getAt(doc, p.slice(0, -1));
  const last = p[p.length - 1]!;
  if (Array.isArray(parent)) {
    if (!/^(0|[1-9]\d*)$/.test(last) || Number(last) >= parent.length) return false;
    parent[Number(last)] = value;
    return true;
  }
  if (isObject(parent) && Object.prototype.hasOwnProperty.call(parent, last)) {
    define(parent, last, value);
    return true;
  }
  return false;
}

// `__proto__` as an argument name must stay data, never reach the prototype.
function define(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}
