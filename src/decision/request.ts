/**
 * Bounds and shapes of a check request, shared by every edge (REST and gRPC on
 * both processes). A request that fails here gets INVALID_ARGUMENT / HTTP 400 and
 * no decision; the token itself is not judged here (a bad token is a DENY).
 */
import { invalid } from '../common/errors';
import type { DecisionRequest } from './types';

export const CHECK_LIMITS = {
  tokenChars: 8192,
  actionChars: 256,
  resourceChars: 1024,
  contextBytes: 16384,
  approvalIdChars: 80,
  batchItems: 100,
};

export interface CheckInput {
  token: string;
  action: string;
  resource: string;
  context: Record<string, unknown>;
  approvalId: string;
}

/** Validates a check body (REST JSON or a decoded gRPC message). */
export function parseCheckRequest(body: Record<string, unknown>, prefix = ''): CheckInput {
  const f = (name: string) => prefix + name;
  const token = body.token;
  if (typeof token !== 'string' || token === '')
    throw invalid(f('token'), 'token is required (the "act_..." string from POST /api/tokens)');
  // Oversized tokens are rejected before any parsing; the decision would be MALFORMED_TOKEN anyway.
  if (token.length > CHECK_LIMITS.tokenChars)
    throw invalid(f('token'), `token must be at most ${CHECK_LIMITS.tokenChars} characters`);
  const action = body.action;
  if (typeof action !== 'string' || action === '')
    throw invalid(f('action'), 'action is required, e.g. "read:customer_profile"');
  if (action.length > CHECK_LIMITS.actionChars)
    throw invalid(f('action'), `action must be at most ${CHECK_LIMITS.actionChars} characters`);
  const resource = body.resource ?? '';
  if (typeof resource !== 'string') throw invalid(f('resource'), 'resource must be a string');
  if (resource.length > CHECK_LIMITS.resourceChars)
    throw invalid(f('resource'), `resource must be at most ${CHECK_LIMITS.resourceChars} characters`);
  const context = body.context ?? {};
  if (typeof context !== 'object' || context === null || Array.isArray(context))
    throw invalid(f('context'), 'context must be a JSON object');
  if (jsonSize(context, CHECK_LIMITS.contextBytes, 0) > CHECK_LIMITS.contextBytes) {
    throw invalid(f('context'), `context must be at most ${CHECK_LIMITS.contextBytes} bytes of JSON`);
  }
  const approvalId = body.approval_id ?? '';
  if (typeof approvalId !== 'string' || approvalId.length > CHECK_LIMITS.approvalIdChars) {
    throw invalid(f('approval_id'), 'approval_id must be an "approval_..." id');
  }
  return { token, action, resource, context: context as Record<string, unknown>, approvalId };
}

export function toDecisionRequest(c: CheckInput): DecisionRequest {
  return {
    token: c.token,
    action: c.action,
    resource: c.resource,
    context: c.context,
    approvalId: c.approvalId || undefined,
  };
}

/** Validates a batch: one token, 1-100 items, each item validated like a single check. */
export function parseCheckBatch(token: unknown, items: unknown): CheckInput[] {
  if (!Array.isArray(items) || items.length === 0 || items.length > CHECK_LIMITS.batchItems) {
    throw invalid('items', `items must be an array of 1-${CHECK_LIMITS.batchItems} checks`);
  }
  return items.map((it: unknown, i: number) => {
    if (typeof it !== 'object' || it === null || Array.isArray(it))
      throw invalid(`items[${i}]`, 'each item must be an object');
    return parseCheckRequest({ ...(it as Record<string, unknown>), token }, `items[${i}].`);
  });
}

/**
 * The size of `v` as JSON (UTF-16 length, an upper bound close to the UTF-8 bytes for ASCII),
 * stopping early past `budget`, without building the string. Also makes the value canonical
 * for the audit hash: -0 becomes 0 (JSON cannot tell them apart); NaN/±Infinity, which JSON
 * cannot carry, are rejected.
 */
function jsonSize(v: unknown, budget: number, depth: number): number {
  if (depth > 32) throw invalid('context', 'context is nested more than 32 levels deep');
  switch (typeof v) {
    case 'string':
      return v.length + 2;
    case 'number':
      if (!Number.isFinite(v)) throw invalid('context', 'context numbers must be finite');
      return 24;
    case 'boolean':
      return 5;
    case 'object': {
      if (v === null) return 4;
      let n = 2;
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length && n <= budget; i++) {
          if (Object.is(v[i], -0)) v[i] = 0;
          n += jsonSize(v[i], budget - n, depth + 1) + 1;
        }
        return n;
      }
      const o = v as Record<string, unknown>;
      for (const k in o) {
        if (n > budget) break;
        if (Object.is(o[k], -0)) o[k] = 0;
        n += k.length + 3 + jsonSize(o[k], budget - n, depth + 1) + 1;
      }
      return n;
    }
    default:
      return 4; // undefined/functions are dropped by JSON; count them small
  }
}
