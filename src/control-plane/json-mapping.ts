/**
 * REST JSON forms of the generated messages: the same snake_case field names, enums as their
 * names ("ACTIVE", "DENY", "GRANTED"), and one shape per resource — an optional field that is
 * not set is absent, never a sentinel ("", 0, -1). Exported audit records keep every field the
 * hash covers, so `act audit verify --file` can rebuild them exactly.
 */
import {
  AgentStatus,
  Role,
  type Agent,
  type ApiKey,
  type Approval,
  type AuditRecord,
  type IssueTokenResponse,
  type Policy,
  type PolicyConstraints,
  type Propagation,
  type Rule,
  type SidecarInfo,
  type TokenInfo,
} from '../gen/act/v1/admin';
import { ApprovalStatus, Decision, ReasonCode } from '../gen/act/v1/decision';
import { detailsJson } from '../decision/wire';

type Json = Record<string, unknown>;

/** Copies `o` without the listed keys whose value is '' / undefined. */
function dropEmpty<T extends object>(o: T, keys: readonly (keyof T)[]): Json {
  const out: Json = { ...(o as Json) };
  for (const k of keys)
    if (out[k as string] === '' || out[k as string] === undefined) delete out[k as string];
  return out;
}

export function agentJson(a: Agent): Json {
  return { ...dropEmpty(a, ['description']), status: AgentStatus[a.status] };
}

function constraintsJson(c: PolicyConstraints | undefined): Json {
  const out: Json = {};
  if (!c) return out;
  if (c.max_actions_per_day > 0) out.max_actions_per_day = c.max_actions_per_day;
  if (c.allowed_hours) out.allowed_hours = c.allowed_hours;
  if (c.rate_limit) out.rate_limit = c.rate_limit;
  if (c.timezone) out.timezone = c.timezone;
  return out;
}

function ruleJson(r: Rule): Json {
  return dropEmpty(r, ['description']);
}

export function policyJson(p: Policy): Json {
  const out: Json = {
    ...dropEmpty(p, ['description']),
    constraints: constraintsJson(p.constraints),
    conditions: p.conditions.map(ruleJson),
    approval_rules: p.approval_rules.map(ruleJson),
  };
  if (p.propagation === undefined) delete out.propagation;
  else out.propagation = propagationJson(p.propagation);
  return out;
}

export function issuedTokenJson(t: IssueTokenResponse): Json {
  return dropEmpty(t, ['parent_token_id']);
}

export function tokenJson(t: TokenInfo): Json {
  return dropEmpty(t, ['parent_token_id', 'revoked_at']);
}

export function approvalJson(a: Approval): Json {
  return {
    ...dropEmpty(a, [
      'resource',
      'resolved_by',
      'resolved_at',
      'comment',
      'used_at',
      'used_audit_id',
      'used_by',
      'agent_name',
      'audit_id',
      'source',
    ]),
    status: ApprovalStatus[a.status],
  };
}

export function auditJson(r: AuditRecord): Json {
  const out: Json = {
    ...dropEmpty(r, ['agent_id', 'token_id', 'resource', 'approval_id', 'prev_hash']),
    decision: Decision[r.decision],
    reason_code: ReasonCode[r.reason_code],
  };
  // Present (even empty) exactly when the record has it: the hash covers the difference.
  if (r.details === undefined) delete out.details;
  else out.details = detailsJson(r.details);
  return out;
}

export function apiKeyJson(k: ApiKey): Json {
  return { ...k, role: Role[k.role] };
}

export function sidecarJson(s: SidecarInfo): Json {
  return dropEmpty(s, ['connected_at', 'control_plane', 'version']);
}

export function propagationJson(p: Propagation): Json {
  const out: Json = { ...p };
  if (p.disconnected_sidecar_ids.length === 0) delete out.disconnected_sidecar_ids;
  return out;
}

export function roleName(r: Role): string {
  return Role[r];
}

/** Columns of the CSV export, in order; `context` and `details` are JSON objects. */
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
  'details',
  'prev_hash',
  'hash',
] as const;

export function auditCsvRow(r: AuditRecord): (string | number | boolean)[] {
  const j = auditJson(r);
  return AUDIT_CSV_COLUMNS.map((c) => {
    if (c === 'policy_ids') return r.policy_ids.join(';');
    if (c === 'context') return JSON.stringify(r.context ?? {});
    if (c === 'details') return JSON.stringify(j.details ?? {});
    const v = j[c];
    return v === undefined ? '' : (v as string | number | boolean);
  });
}
