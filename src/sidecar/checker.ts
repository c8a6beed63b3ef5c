/**
 * The sidecar's check pipeline: decide() on the local replica, consume budgets,
 * seal the audit record into the hash chain and wait until the spool says it is
 * safe at the configured level — only then does the answer go out.
 */
import { buildAuditRecord } from '../audit/record';
import type { Clock } from '../common/clock';
import { ActError } from '../common/errors';
import { DEFAULT_REASON_TEXT } from '../common/reasons';
import { newSortableId } from '../common/ids';
import { decide } from '../decision';
import { toDecisionRequest, type CheckInput } from '../decision/request';
import type { ApprovalView, DecisionResult, DecisionView } from '../decision/types';
import type { CheckOutcome } from '../decision/wire';
import type { AuditRecord } from '../gen/act/v1/admin';
import type { LmdbReplica } from '../replica';
import { VerificationCache } from '../token';

export interface SpoolAppender {
  sealAndAppend(record: AuditRecord): Promise<void>;
}

export interface CheckerConfig {
  staleAfterMs: number;
  stalePolicy: 'fail-closed' | 'serve-stale';
  /** How long an approval this sidecar raised is remembered before the control plane's copy arrives. */
  approvalTtlMs: number;
}

const NO_REPLICA: DecisionResult = {
  decision: 'DENY',
  reasonCode: 'REPLICA_STALE',
  reason: `${DEFAULT_REASON_TEXT.REPLICA_STALE} (no replica yet)`,
  details: {},
  claims: undefined,
  policyIds: [],
  usage: [],
};

export class Checker {
  private readonly verifier = new VerificationCache(100_000);
  /** Approvals raised here, until sync brings the control plane's record. */
  private readonly raised = new Map<string, ApprovalView>();
  /** Approvals used here (one use), until sync brings the USED status. */
  private readonly used = new Set<string>();
  private readonly view: DecisionView;

  constructor(
    private readonly replica: LmdbReplica,
    private readonly spool: SpoolAppender,
    private readonly clock: Clock,
    private readonly cfg: CheckerConfig,
    /** Last contact with the control plane in this process (ms), from the sync client. */
    private readonly lastContact: () => number,
    private readonly onDecision: (r: DecisionResult, latencyUs: number) => void,
    private readonly onSpooled: () => void,
  ) {
    const r = replica;
    this.view = {
      get revision() {
        return r.revision;
      },
      publicKey: r.publicKey,
      isRevoked: (id) => r.isRevoked(id),
      agent: (id) => r.agent(id),
      policy: (id) => r.policy(id),
      approval: (id) => {
        const a = r.approval(id) ?? this.raised.get(id);
        if (a && this.used.has(id) && a.status === 'APPROVED') return { ...a, status: 'USED' };
        return a;
      },
    };
  }

  /** True when the replica has not heard from the control plane within the bound. */
  isStale(nowMs: number): boolean {
    const last = Math.max(this.lastContact(), this.replica.lastContactMs);
    return last === 0 || nowMs - last > this.cfg.staleAfterMs;
  }

  async check(input: CheckInput): Promise<CheckOutcome> {
    const started = process.hrtime.bigint();
    const nowMs = this.clock();
    const stale = this.cfg.stalePolicy === 'fail-closed' && this.isStale(nowMs);
    // Without any replica (never synced: no keys, agents or policies) every answer would be a
    // misleading UNKNOWN_KEY; the truth is that this sidecar has nothing to decide from.
    const result =
      this.replica.revision === 0
        ? NO_REPLICA
        : decide(toDecisionRequest(input), {
            view: this.view,
            verifier: this.verifier,
            counters: this.replica,
            nowMs,
            stale,
          });
    // Budgets are consumed in the same synchronous step as the decision.
    this.replica.applyUsage(result.usage);
    const auditId = newSortableId('audit', nowMs);
    let approvalId = result.approvalId ?? '';
    if (result.decision === 'APPROVAL_REQUIRED' && result.approvalRequest && result.claims) {
      // The approval is announced upstream inside this audit record (durable before the answer).
      approvalId = newSortableId('approval', nowMs);
      this.raised.set(approvalId, {
        id: approvalId,
        status: 'PENDING',
        tokenId: result.claims.token_id,
        action: input.action,
        resource: input.resource,
        expiresAtMs: nowMs + this.cfg.approvalTtlMs,
      });
    } else if (result.decision === 'ALLOW' && result.approvalId) {
      this.used.add(result.approvalId);
    }
    const latencyUs = Number(process.hrtime.bigint() - started) / 1000;
    const record = buildAuditRecord({
      auditId,
      nowMs,
      action: input.action,
      resource: input.resource,
      context: input.context,
      result,
      revision: this.replica.revision,
      latencyUs,
      approvalId,
    });
    try {
      await this.spool.sealAndAppend(record);
    } catch (err) {
      if ((err as { code?: string }).code === 'SPOOL_FULL') {
        throw new ActError('UNAVAILABLE', 'audit spool is full; failing closed until records are shipped', {
          cause: err,
        });
      }
      throw new ActError('UNAVAILABLE', 'audit record could not be made safe; failing closed', {
        cause: err,
      });
    }
    this.onSpooled();
    this.onDecision(result, Number(process.hrtime.bigint() - started) / 1000);
    return { result, auditId, approvalId, revision: this.replica.revision, wireDetails: record.details };
  }

  /** Forgets local approval state the replica now has (called periodically). */
  prune(nowMs: number): void {
    for (const [id, a] of this.raised)
      if (this.replica.approval(id) || a.expiresAtMs <= nowMs) this.raised.delete(id);
    for (const id of this.used) {
      const a = this.replica.approval(id);
      if (!a || a.status !== 'APPROVED') this.used.delete(id);
    }
  }
}
