/**
 * Stable reason codes, mirroring `act.v1.ReasonCode` in proto/act/v1/decision.proto.
 * The string names are what REST clients see in `reason_code`.
 */
import { Decision as WireDecision, ReasonCode as WireReasonCode } from '../gen/act/v1/decision';

export const REASON_CODES = [
  'MALFORMED_TOKEN',
  'UNKNOWN_KEY',
  'BAD_SIGNATURE',
  'TOKEN_NOT_YET_VALID',
  'TOKEN_EXPIRED',
  'TOKEN_REVOKED',
  'AGENT_UNKNOWN',
  'AGENT_DISABLED',
  'REPLICA_STALE',
  'POLICY_UNKNOWN',
  'RESOURCE_PATH_INVALID',
  'CAPABILITY_NOT_GRANTED',
  'CONDITION_FAILED',
  'OUTSIDE_ALLOWED_HOURS',
  'RATE_LIMITED',
  'DAILY_LIMIT_EXCEEDED',
  'APPROVAL_REQUIRED_BY_POLICY',
  'APPROVAL_DENIED',
  'APPROVAL_UNAVAILABLE',
  'BUDGET_UNAVAILABLE',
  'GRANTED',
] as const;

/**
 * Codes the enforcement pipeline (src/enforce) gives, never decide(): they need the control plane
 * at check time. Integration tests cover them; the data-driven decision cases cannot.
 */
export const PIPELINE_REASON_CODES: readonly ReasonCode[] = ['APPROVAL_UNAVAILABLE', 'BUDGET_UNAVAILABLE'];

export type ReasonCode = (typeof REASON_CODES)[number];

export type DecisionKind = 'ALLOW' | 'DENY' | 'APPROVAL_REQUIRED';

/** Maps a reason code to the generated enum value (wire form). */
export function reasonToWire(code: ReasonCode): WireReasonCode {
  return WireReasonCode[code];
}

/** Maps a wire enum value back to a reason code; unknown values become undefined. */
export function reasonFromWire(code: WireReasonCode): ReasonCode | undefined {
  const name = WireReasonCode[code] as string | undefined;
  return (REASON_CODES as readonly string[]).includes(name ?? '') ? (name as ReasonCode) : undefined;
}

export function decisionToWire(d: DecisionKind): WireDecision {
  return WireDecision[d];
}

export function decisionFromWire(d: WireDecision): DecisionKind | undefined {
  const name = WireDecision[d] as string | undefined;
  return name === 'ALLOW' || name === 'DENY' || name === 'APPROVAL_REQUIRED' ? name : undefined;
}

/** Default human-readable reasons. The seed's texts are kept verbatim where it has one. */
export const DEFAULT_REASON_TEXT: Record<ReasonCode, string> = {
  MALFORMED_TOKEN: 'Token is malformed',
  UNKNOWN_KEY: 'Token signed by an unknown key',
  BAD_SIGNATURE: 'Token signature is invalid',
  TOKEN_NOT_YET_VALID: 'Token is not yet valid',
  TOKEN_EXPIRED: 'Token has expired',
  TOKEN_REVOKED: 'Token has been revoked',
  AGENT_UNKNOWN: 'Agent is unknown',
  AGENT_DISABLED: 'Agent is disabled',
  REPLICA_STALE: 'Policy replica is stale; failing closed',
  POLICY_UNKNOWN: 'None of the token\u2019s policies exists',
  RESOURCE_PATH_INVALID: 'Resource path has a "." or ".." segment',
  CAPABILITY_NOT_GRANTED: 'Capability not granted in token',
  CONDITION_FAILED: 'Policy condition not met',
  OUTSIDE_ALLOWED_HOURS: 'Outside the policy\u2019s allowed hours',
  RATE_LIMITED: 'Rate limit exceeded',
  DAILY_LIMIT_EXCEEDED: 'Daily action limit reached',
  APPROVAL_REQUIRED_BY_POLICY: 'Human approval required',
  APPROVAL_DENIED: 'Approval was denied',
  APPROVAL_UNAVAILABLE: 'Approval cannot be checked with the control plane; failing closed',
  BUDGET_UNAVAILABLE: 'Budget lease cannot be had from the control plane; failing closed',
  GRANTED: 'Token valid, capability granted',
};
