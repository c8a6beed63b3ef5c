/**
 * Wire forms of a decision: the REST JSON (the seed's shape plus details) and the
 * gRPC CheckPermissionResponse. Both processes answer checks through these.
 */
import { decisionToWire, reasonToWire } from '../common/reasons';
import { AgentStatus, type Agent, type Approval } from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import type { CheckPermissionResponse, DecisionDetails } from '../gen/act/v1/decision';
import type { AgentView, ApprovalView, DecisionResult } from './types';

/** A decision with the ids the shell attached to it. */
export interface CheckOutcome {
  result: DecisionResult;
  auditId: string;
  approvalId: string;
  revision: number;
  /** The details in wire form when the shell already made them (for the audit record). */
  wireDetails?: DecisionDetails | undefined;
}

/** The seed's response shape plus the decision details. */
export function checkJson(action: string, o: CheckOutcome): Record<string, unknown> {
  const r = o.result;
  const out: Record<string, unknown> = {
    allowed: r.decision === 'ALLOW',
    action,
    reason: r.reason,
    audit_id: o.auditId,
    decision: r.decision,
    reason_code: r.reasonCode,
    details: r.details,
    policy_revision: o.revision,
  };
  if (o.approvalId) out.approval_id = o.approvalId;
  return out;
}

export function checkMessage(action: string, o: CheckOutcome): CheckPermissionResponse {
  const r = o.result;
  return {
    allowed: r.decision === 'ALLOW',
    action,
    decision: decisionToWire(r.decision),
    reason_code: reasonToWire(r.reasonCode),
    reason: r.reason,
    audit_id: o.auditId,
    approval_id: o.approvalId,
    details: o.wireDetails ?? detailsToWire(r.details),
    policy_revision: o.revision,
  };
}

/** Decision details in wire form (absent budgets stay absent: no sentinel values). */
export function detailsToWire(d: DecisionResult['details']): DecisionDetails {
  const out: DecisionDetails = {
    missing_capability: d.missing_capability ?? '',
    retry_after_ms: d.retry_after_ms ?? 0,
    next_allowed_at: d.next_allowed_at ?? '',
    policy_id: d.policy_id ?? '',
    rule: d.rule ?? '',
    presented_approval_id: d.presented_approval_id ?? '',
  };
  if (d.remaining_daily_budget !== undefined) out.remaining_daily_budget = d.remaining_daily_budget;
  if (d.remaining_rate !== undefined) out.remaining_rate = d.remaining_rate;
  return out;
}

/** Wire details as REST JSON: only the fields that say something. */
export function detailsJson(d: DecisionDetails | undefined): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!d) return out;
  if (d.missing_capability) out.missing_capability = d.missing_capability;
  if (d.retry_after_ms) out.retry_after_ms = d.retry_after_ms;
  if (d.next_allowed_at) out.next_allowed_at = d.next_allowed_at;
  // Exported records must re-hash to what was sealed: a value that is present is shown (records
  // sealed before these fields were optional carry -1).
  if (d.remaining_daily_budget !== undefined) out.remaining_daily_budget = d.remaining_daily_budget;
  if (d.remaining_rate !== undefined) out.remaining_rate = d.remaining_rate;
  if (d.policy_id) out.policy_id = d.policy_id;
  if (d.rule) out.rule = d.rule;
  if (d.presented_approval_id) out.presented_approval_id = d.presented_approval_id;
  return out;
}

/** The decision engine's view of a stored agent. */
export function agentFromWire(a: Agent): AgentView {
  return {
    id: a.agent_id,
    status: a.status === AgentStatus.ACTIVE ? 'ACTIVE' : 'DISABLED',
    metadata: a.metadata,
  };
}

/** The decision engine's view of a stored approval. */
export function approvalFromWire(a: Approval): ApprovalView {
  return {
    id: a.approval_id,
    status: (ApprovalStatus[a.status] as ApprovalView['status'] | undefined) ?? 'EXPIRED',
    tokenId: a.token_id,
    action: a.action,
    resource: a.resource,
    requestHash: a.request_hash ?? '',
    expiresAtMs: Date.parse(a.expires_at),
    ...(a.resolved_by ? { resolvedBy: a.resolved_by } : {}),
    ...(a.comment ? { comment: a.comment } : {}),
  };
}
