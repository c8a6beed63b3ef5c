/** Builds the audit record of one decision (the same shape on sidecar and control plane). */
import { reasonToWire, decisionToWire } from '../common/reasons';
import { AuditRecord } from '../gen/act/v1/admin';
import { detailsToWire } from '../decision/wire';
import type { DecisionResult } from '../decision/types';

export interface AuditInput {
  auditId: string;
  nowMs: number;
  action: string;
  resource: string;
  context: Record<string, unknown>;
  result: DecisionResult;
  revision: number;
  latencyUs: number;
  approvalId: string;
}

export function buildAuditRecord(i: AuditInput): AuditRecord {
  const r = i.result;
  return AuditRecord.fromPartial({
    audit_id: i.auditId,
    time: new Date(i.nowMs).toISOString(),
    agent_id: r.claims?.agent_id ?? '',
    token_id: r.claims?.token_id ?? '',
    action: i.action,
    resource: i.resource,
    decision: decisionToWire(r.decision),
    reason_code: reasonToWire(r.reasonCode),
    reason: r.reason,
    context: i.context,
    policy_ids: r.policyIds,
    policy_revision: i.revision,
    latency_us: Math.min(0xffffffff, Math.max(0, Math.round(i.latencyUs))),
    approval_id: i.approvalId,
    allowed: r.decision === 'ALLOW',
    details: detailsToWire(r.details),
  });
}
