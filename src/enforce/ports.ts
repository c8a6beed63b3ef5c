/**
 * The small ports the enforcement pipeline runs over. Each edge (the sidecar, the control
 * plane's central checks) wires them: a read view, budgets, approvals, an audit sink.
 */
import type { AuditRecord } from '../gen/act/v1/admin';
import type { ApprovalView } from '../decision/types';

/**
 * The owner of shared state (the control plane) could not be reached, or did not answer in
 * time: the check fails closed with its own reason code (APPROVAL_UNAVAILABLE, BUDGET_UNAVAILABLE).
 */
export class PortUnavailable extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PortUnavailable';
  }
}

/** A check that hit an approval rule, as the approver will see it. */
export interface ApprovalRequestInput {
  /** The enforcement point (its audit chain source). */
  source: string;
  /** The audit record of the check that asks. */
  auditId: string;
  agentId: string;
  tokenId: string;
  action: string;
  resource: string;
  context: Record<string, unknown>;
  policyId: string;
  rule: string;
}

/** Use of a grant by one check. */
export interface ConsumeInput {
  approvalId: string;
  agentId: string;
  tokenId: string;
  action: string;
  resource: string;
  requestHash: string;
  source: string;
  /** The audit record of the check the grant would allow. */
  auditId: string;
  /** The asker stops waiting at this time (Unix ms): a later consume is not applied. */
  notAfterMs?: number;
}

export interface ConsumeResult {
  /** True only when this call used the grant (APPROVED -> USED). */
  consumed: boolean;
  /** Why not, when not consumed. */
  reason: string;
}

/** Approval state is changed only here, atomically, at the control plane. */
export interface ApprovalPort {
  /** Records a pending approval; resolves with it. @throws PortUnavailable */
  request(input: ApprovalRequestInput): Promise<ApprovalView>;
  /** Uses a grant, once across the fleet. @throws PortUnavailable */
  consume(input: ConsumeInput): Promise<ConsumeResult>;
}

export type BudgetKind = 'DAILY' | 'RATE';

export interface LeaseRequest {
  agentId: string;
  policyId: string;
  kind: BudgetKind;
  want: number;
}

export interface LeaseGrant {
  leaseId: string;
  granted: number;
  /** DAILY: the day the units belong to. */
  window: string;
  /** Spendable for this long from when the request was sent. */
  validMs: number;
  /** Unleased units left after this grant (DAILY) / units the rate would still grant now (RATE). */
  remaining: number;
  /** When granted is 0: when to ask again. */
  retryAfterMs: number;
  limit: number;
}

export interface LeaseReturn {
  leaseId: string;
  agentId: string;
  policyId: string;
  window: string;
  unused: number;
}

/** The budget owner (the control plane's ledger, in process or over Sync). */
export interface LeasePort {
  /** @throws PortUnavailable */
  lease(req: LeaseRequest): Promise<LeaseGrant>;
  /** Gives back unused daily units (best effort, on shutdown). */
  release(returns: LeaseReturn[]): Promise<void>;
}

/** Where decisions' records go: sealed into the point's hash chain and safe at its level on resolve. */
export interface AuditSink {
  /** @throws when the record cannot be made safe (the check then fails closed). */
  append(record: AuditRecord): Promise<void>;
}
