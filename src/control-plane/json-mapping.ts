/**
 * REST JSON forms of the generated messages: the same snake_case field names,
 * with enums as their names ("ACTIVE", "DENY", "GRANTED") instead of numbers.
 */
import {
  AgentStatus,
  Role,
  type Agent,
  type Approval,
  type AuditRecord,
  type Policy,
} from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import { Decision, ReasonCode } from '../gen/act/v1/decision';

export function agentJson(a: Agent): Record<string, unknown> {
  return { ...a, status: AgentStatus[a.status] };
}

export function policyJson(p: Policy): Record<string, unknown> {
  return { ...p };
}

export function approvalJson(a: Approval): Record<string, unknown> {
  return { ...a, status: ApprovalStatus[a.status] };
}

export function auditJson(r: AuditRecord): Record<string, unknown> {
  return { ...r, decision: Decision[r.decision], reason_code: ReasonCode[r.reason_code] };
}

export function roleName(r: Role): string {
  return Role[r];
}

/** Columns of the CSV export, in order. */
export const AUDIT_CSV_COLUMNS = [
  'audit_id',
  'time',
  'source',
  'seq',
  'agent_id',
  'token_id',
  'action',
  'resource',
  'allowed',
  'decision',
  'reason_code',
  'reason',
  'approval_id',
  'policy_ids',
  'policy_revision',
  'latency_us',
  'context',
  'prev_hash',
  'hash',
] as const;

export function auditCsvRow(r: AuditRecord): (string | number | boolean)[] {
  const j = auditJson(r);
  return AUDIT_CSV_COLUMNS.map((c) => {
    if (c === 'policy_ids') return r.policy_ids.join(';');
    if (c === 'context') return JSON.stringify(r.context ?? {});
    return j[c] as string | number | boolean;
  });
}
