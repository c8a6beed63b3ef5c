/**
 * What the HTTP adapters (Express, Fastify) answer for a decision or a failed check: one table,
 * so both frameworks answer alike. Fail closed: no decision means 503, never the handler.
 */
import type { ACTClient } from '../client.js';
import type { Decision } from '../decision.js';
import { ACTError, ACTInvalidArgumentError } from '../errors.js';
import type { CheckRequest } from '../validate.js';

/** The JSON body of a refused request. */
export interface DeniedBody {
  /** "Agent not authorized", "Approval required" or "Permission check unavailable". */
  error: string;
  /** Why, in words (the sidecar's reason, or what went wrong with the check). */
  reason: string;
  /** The decision's reason code (e.g. "CAPABILITY_NOT_GRANTED"), or the error's code (e.g. "UNAVAILABLE"). */
  reason_code: string;
  /** The decision's audit record, when there was a decision. */
  audit_id?: string;
  /** The approval to wait for, when the decision is APPROVAL_REQUIRED. */
  approval_id?: string;
}

export type HttpOutcome =
  | { allowed: true; decision: Decision }
  | { allowed: false; status: number; body: DeniedBody; decision?: Decision };

/**
 * Checks `request` and says what to answer. Argument errors (TypeError: a resolver returned
 * something that is not a request) and bugs propagate to the framework's error handler (500).
 */
export async function httpOutcome(client: ACTClient, request: CheckRequest): Promise<HttpOutcome> {
  let decision: Decision;
  try {
    decision = await client.check(request);
  } catch (err) {
    if (err instanceof ACTInvalidArgumentError)
      return {
        allowed: false,
        status: 400,
        body: { error: 'Bad request', reason: err.message, reason_code: err.code },
      };
    if (err instanceof ACTError)
      return {
        allowed: false,
        status: 503,
        // The message names the sidecar's address: keep it for logs, not for the caller.
        body: {
          error: 'Permission check unavailable',
          reason: 'The permission service could not decide; try again later',
          reason_code: err.code,
        },
      };
    throw err;
  }
  if (decision.allowed) return { allowed: true, decision };
  const pending = decision.decision === 'APPROVAL_REQUIRED';
  const body: DeniedBody = {
    error: pending ? 'Approval required' : 'Agent not authorized',
    reason: decision.reason,
    reason_code: decision.reasonCode,
    audit_id: decision.auditId,
  };
  if (pending && decision.approvalId) body.approval_id = decision.approvalId;
  return { allowed: false, status: 403, body, decision };
}

/** Resolves an option that is either a value or a function of the request. */
export function resolve<Req, T>(v: T | ((req: Req) => T), req: Req): T {
  return typeof v === 'function' ? (v as (req: Req) => T)(req) : v;
}
