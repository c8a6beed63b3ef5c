/**
 * The SDK's view of the sidecar's answers: enum values as names, absent details as undefined.
 * Anything the SDK does not recognise is read as a deny.
 */
import {
  ApprovalStatus as WireApprovalStatus,
  Decision as WireDecision,
  ReasonCode as WireReasonCode,
  type ApprovalUpdate as WireApprovalUpdate,
  type CheckPermissionResponse,
} from './gen/act/v1/decision.js';

/** ALLOW, DENY or APPROVAL_REQUIRED. */
export type DecisionKind = 'ALLOW' | 'DENY' | 'APPROVAL_REQUIRED';

/**
 * The stable reason code of a decision (`act.v1.ReasonCode`), e.g. "GRANTED",
 * "CAPABILITY_NOT_GRANTED", "RATE_LIMITED"; "UNRECOGNIZED" for a code newer than this SDK.
 */
export type ReasonCode = Exclude<keyof typeof WireReasonCode, 'REASON_CODE_UNSPECIFIED'>;

/** Where an approval request stands; "UNRECOGNIZED" for a status newer than this SDK. */
export type ApprovalStatus = Exclude<keyof typeof WireApprovalStatus, 'APPROVAL_STATUS_UNSPECIFIED'>;

/** What an agent can do about a decision. Fields that do not apply are undefined. */
export interface DecisionDetails {
  /** The capability that was required and not granted (CAPABILITY_NOT_GRANTED). */
  missingCapability?: string;
  /** Milliseconds until a retry can succeed (RATE_LIMITED, DAILY_LIMIT_EXCEEDED, OUTSIDE_ALLOWED_HOURS, …). */
  retryAfterMs?: number;
  /** Start of the next allowed window, RFC 3339 (OUTSIDE_ALLOWED_HOURS). */
  nextAllowedAt?: string;
  /** Actions left today under the tightest daily maximum; undefined when unlimited. */
  remainingDailyBudget?: number;
  /** Actions left in the current rate-limit window; undefined when unlimited. */
  remainingRate?: number;
  /** The policy whose rule produced the decision. */
  policyId?: string;
  /** The failing CEL condition or the matching approval rule. */
  rule?: string;
}

/** A decision, as `check()` resolves it. A deny is a value: only faults reject. */
export interface Decision {
  /** True only when `decision` is "ALLOW". */
  allowed: boolean;
  decision: DecisionKind;
  reasonCode: ReasonCode;
  /** A human-readable reason, e.g. "Capability not granted in token". */
  reason: string;
  /** The action that was checked. */
  action: string;
  /** The id of this decision's audit record ("audit_…"). */
  auditId: string;
  /** The approval to wait for when `decision` is "APPROVAL_REQUIRED" ("approval_…"), else undefined. */
  approvalId: string | undefined;
  /** The control-plane revision the decision was made at. */
  policyRevision: number;
  details: DecisionDetails;
}

/** The state of an approval request, as `waitForApproval()` resolves it. */
export interface ApprovalUpdate {
  approvalId: string;
  status: ApprovalStatus;
  /** True once nothing more will change (decided by a human, expired or used). */
  decided: boolean;
  /** Who decided (API key name), when a human did. */
  resolvedBy: string | undefined;
  /** The approver's comment, if any. */
  comment: string | undefined;
  /** The request's deadline, RFC 3339. */
  expiresAt: string | undefined;
  /** A sentence for the agent: what happened and what to do next. */
  reason: string;
}

/** Reads a CheckPermissionResponse. `allowed` needs both the flag and the ALLOW decision. */
export function decisionFromWire(res: CheckPermissionResponse, action: string): Decision {
  const name = WireDecision[res.decision] as string | undefined;
  const decision: DecisionKind = name === 'ALLOW' || name === 'APPROVAL_REQUIRED' ? name : 'DENY';
  const d = res.details;
  return {
    allowed: res.allowed === true && decision === 'ALLOW',
    decision,
    reasonCode: enumName(WireReasonCode, res.reason_code) as ReasonCode,
    reason: res.reason,
    action,
    auditId: res.audit_id,
    approvalId: decision === 'APPROVAL_REQUIRED' && res.approval_id ? res.approval_id : undefined,
    policyRevision: res.policy_revision,
    details: {
      missingCapability: d?.missing_capability || undefined,
      retryAfterMs: d?.retry_after_ms || undefined,
      nextAllowedAt: d?.next_allowed_at || undefined,
      remainingDailyBudget:
        d?.remaining_daily_budget !== undefined && d.remaining_daily_budget >= 0
          ? d.remaining_daily_budget
          : undefined,
      remainingRate: d?.remaining_rate !== undefined && d.remaining_rate >= 0 ? d.remaining_rate : undefined,
      policyId: d?.policy_id || undefined,
      rule: d?.rule || undefined,
    },
  };
}

export function approvalFromWire(u: WireApprovalUpdate): ApprovalUpdate {
  return {
    approvalId: u.approval_id,
    status: enumName(WireApprovalStatus, u.status) as ApprovalStatus,
    decided: u.decided,
    resolvedBy: u.resolved_by || undefined,
    comment: u.comment || undefined,
    expiresAt: u.expires_at || undefined,
    reason: u.reason,
  };
}

/** The enum member's name; 0 ("unspecified") and unknown values read as "UNRECOGNIZED". */
function enumName(e: Record<number, string>, v: number): string {
  return v !== 0 && typeof e[v] === 'string' && v !== -1 ? e[v] : 'UNRECOGNIZED';
}
