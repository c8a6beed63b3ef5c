/**
 * Argument checks, run before any call: a malformed request throws a TypeError and never reaches
 * the sidecar. The old positional form `checkPermission(action, options)` lands here too (a
 * string where the request object belongs) instead of checking the action "[object Object]".
 */

/** One request: what the agent is about to do. */
export interface CheckRequest {
  /** The capability being exercised, "verb:resource_type", e.g. "read:customer_profile". */
  action: string;
  /** The resource acted on, e.g. "customer_54321" (matched against policy resource patterns). */
  resource?: string | undefined;
  /**
   * JSON-like facts for policy conditions and the audit trail, e.g. `{ ip, amount }`. Must be a
   * plain object; values are JSON values (`toJSON()` is honoured, so a Date becomes its ISO string;
   * `undefined` members are dropped as JSON.stringify drops them).
   */
  context?: Record<string, unknown> | undefined;
  /** An approval from an earlier APPROVAL_REQUIRED answer, once a human approved it. */
  approvalId?: string | undefined;
}

/** One item of a batch (a batch carries no approvals). */
export type CheckItem = Omit<CheckRequest, 'approvalId'>;

/** The request as it goes on the wire. */
export interface WireCheck {
  action: string;
  resource: string;
  context: Record<string, unknown> | undefined;
  approval_id: string;
}

const REQUEST_KEYS = new Set(['action', 'resource', 'context', 'approvalId']);
const ITEM_KEYS = new Set(['action', 'resource', 'context']);
/** Deeper than any honest context; stops a cyclic or hostile structure early. */
const MAX_DEPTH = 32;

/** Validates one request object; `what` names it in messages (e.g. "checkPermission()"). */
export function checkRequest(input: unknown, what: string, keys = REQUEST_KEYS): WireCheck {
  if (typeof input === 'string')
    throw new TypeError(
      `${what} takes one object, e.g. ${what.replace('()', '')}({ action: ${JSON.stringify(input)}, resource, context }); ` +
        'the positional form (action, options) is not supported',
    );
  if (!isPlainObject(input))
    throw new TypeError(`${what} takes a request object { action, resource?, context? }`);
  for (const k of Object.keys(input))
    if (!keys.has(k)) throw new TypeError(`${what}: unknown field "${k}" (expected ${[...keys].join(', ')})`);
  const { action, resource, context, approvalId } = input as Record<string, unknown>;
  if (typeof action !== 'string' || action === '')
    throw new TypeError(`${what}: action must be a non-empty string, got ${describe(action)}`);
  return {
    action,
    resource: optionalString(resource, `${what}: resource`),
    context: contextOf(context, `${what}: context`),
    approval_id: optionalString(approvalId, `${what}: approvalId`),
  };
}

/** Validates a batch: a non-empty array of items. An empty batch is refused (`[].every(…)` is true). */
export function checkBatch(items: unknown, max: number): WireCheck[] {
  if (!Array.isArray(items))
    throw new TypeError('checkBatch() takes an array of { action, resource?, context? }');
  if (items.length === 0) throw new TypeError('checkBatch() needs at least one item');
  if (items.length > max) throw new TypeError(`checkBatch() takes at most ${max} items, got ${items.length}`);
  return items.map((item, i) => checkRequest(item, `checkBatch() item ${i}`, ITEM_KEYS));
}

function optionalString(v: unknown, what: string): string {
  if (v === undefined) return '';
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string, got ${describe(v)}`);
  return v;
}

function contextOf(v: unknown, what: string): Record<string, unknown> | undefined {
  if (v === undefined) return undefined;
  if (!isPlainObject(v)) throw new TypeError(`${what} must be a plain object, got ${describe(v)}`);
  return jsonValue(v, what, 0, new Set()) as Record<string, unknown>;
}

/** A JSON copy of `v`, or a TypeError naming the offending path. */
function jsonValue(v: unknown, path: string, depth: number, seen: Set<object>): unknown {
  if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
  if (typeof v === 'number') {
    // JSON would turn these into null, which a condition such as `context.amount <= 1000` then sees.
    if (!Number.isFinite(v)) throw new TypeError(`${path} is ${v}, not a JSON number`);
    return v;
  }
  if (typeof v !== 'object') throw new TypeError(`${path} is a ${typeof v}, not a JSON value`);
  if (depth >= MAX_DEPTH) throw new TypeError(`${path} is nested deeper than ${MAX_DEPTH} levels`);
  if (seen.has(v)) throw new TypeError(`${path} refers to itself`);
  const toJSON = (v as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return jsonValue(toJSON.call(v), path, depth + 1, seen);
  seen.add(v);
  try {
    if (Array.isArray(v))
      return v.map((x, i) => (x === undefined ? null : jsonValue(x, `${path}[${i}]`, depth + 1, seen)));
    if (!isPlainObject(v)) throw new TypeError(`${path} is a ${describe(v)}, not a plain object or array`);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      // Assigning it would set the copy's prototype instead (and the wire code would do the same).
      if (k === '__proto__') throw new TypeError(`${path} has a "__proto__" key`);
      if (x !== undefined) out[k] = jsonValue(x, `${path}.${k}`, depth + 1, seen);
    }
    return out;
  } finally {
    seen.delete(v);
  }
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') return (v as object).constructor?.name ?? 'an object';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return typeof v === 'undefined' ? 'undefined' : `${typeof v} ${String(v)}`;
}
