/**
 * The one enforcement pipeline. Every edge that answers "may I?" — the sidecar's gRPC and REST,
 * the control plane's central checks, the MCP gateway — calls `Enforcer.check`:
 *
 *   decide (pure, on the read view) → budgets (leased slices; a miss waits for a lease and
 *   decides again) → approvals (ask for one, or use a grant, at the control plane) → audit record
 *   (sealed and safe at the sink's level) → answer.
 *
 * No answer leaves before its record is safe; when the sink fails the check fails closed
 * (UNAVAILABLE) and the units it spent are given back. A grant is used only after the approval
 * owner consumed it; when that owner cannot be reached the answer is DENY with
 * APPROVAL_UNAVAILABLE.
 */
import { buildAuditRecord } from '../audit/record';
import type { Clock } from '../common/clock';
import { ActError } from '../common/errors';
import { newSortableId } from '../common/ids';
import { DEFAULT_REASON_TEXT } from '../common/reasons';
import { requestHash as hashRequest } from '../common/request-hash';
import { decide } from '../decision';
import { toDecisionRequest, type CheckInput } from '../decision/request';
import type { ApprovalView, DecisionResult, DecisionView } from '../decision/types';
import type { CheckOutcome } from '../decision/wire';
import type { AuditRecord } from '../gen/act/v1/admin';
import { VerificationCache } from '../token';
import type { LeaseBudgets } from './budgets';
import { PortUnavailable, type ApprovalPort, type AuditSink } from './ports';

export interface EnforcerDeps {
  /** The read view decisions are made on (the sidecar's replica, the control plane's memory view). */
  view: DecisionView;
  budgets: LeaseBudgets;
  approvals: ApprovalPort;
  audit: AuditSink;
  clock: Clock;
  /** This enforcement point's audit chain source (sidecar id, or the control plane's). */
  source: string;
  /** Replica freshness (sidecar). Absent: the view is always fresh (the control plane). */
  freshness?: {
    /** False before the first snapshot: nothing to decide from. */
    hasState(): boolean;
    /** True when past the staleness bound and failing closed. */
    isStale(nowMs: number): boolean;
  };
  /** Called once per answered check with the time from arrival to a safe record. */
  onDecision?: (r: DecisionResult, latencyUs: number) => void;
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

/** Decisions retried after waiting for budget leases, at most. */
const MAX_LEASE_ROUNDS = 2;

export class Enforcer {
  private readonly verifier = new VerificationCache(100_000);
  private readonly local: LocalApprovals;
  private readonly view: DecisionView;

  constructor(private readonly deps: EnforcerDeps) {
    this.local = new LocalApprovals();
    this.view = this.local.over(deps.view);
  }

  /** Verifies token strings for other edges of the same point (approval waits). */
  get tokenVerifier(): VerificationCache {
    return this.verifier;
  }

  /** The view with this point's own approval requests and uses overlaid (approval waits read it). */
  get approvalView(): DecisionView {
    return this.view;
  }

  async check(input: CheckInput): Promise<CheckOutcome> {
    const { budgets, clock, freshness } = this.deps;
    const started = process.hrtime.bigint();
    let nowMs = clock();
    const req = toDecisionRequest(input);
    let hash: string | undefined;
    const requestHash = (): string => (hash ??= hashRequest(input.action, input.resource, input.context));

    let result: DecisionResult;
    if (freshness !== undefined && !freshness.hasState()) {
      result = NO_REPLICA;
    } else {
      const stale = freshness?.isStale(nowMs) ?? false;
      for (let round = 0; ; round++) {
        budgets.beginDecision();
        result = decide(req, {
          view: this.view,
          verifier: this.verifier,
          counters: budgets,
          nowMs,
          stale,
          requestHash,
        });
        if (result.decision === 'ALLOW' || !budgets.hasMisses() || round === MAX_LEASE_ROUNDS) break;
        await budgets.acquire();
        nowMs = clock();
      }
      result = budgets.explain(result);
      // Spent in the same synchronous step as the decision: concurrent checks cannot overspend.
      budgets.apply(result.usage);
    }
    const revision = this.deps.view.revision;
    const auditId = newSortableId('audit', nowMs);
    const approved = await this.approvals(result, input, auditId, requestHash);
    result = approved.result;

    const latencyUs = Number(process.hrtime.bigint() - started) / 1000;
    const record = buildAuditRecord({
      auditId,
      nowMs,
      action: input.action,
      resource: input.resource,
      context: input.context,
      result,
      revision,
      latencyUs,
      approvalId: approved.approvalId,
    });
    try {
      await this.deps.audit.append(record);
    } catch (err) {
      budgets.refund(result.usage);
      if ((err as { code?: string }).code === 'SPOOL_FULL') {
        throw new ActError('UNAVAILABLE', 'audit spool is full; failing closed until records are shipped', {
          cause: err,
        });
      }
      throw new ActError('UNAVAILABLE', 'audit record could not be made safe; failing closed', {
        cause: err,
      });
    }
    this.deps.onDecision?.(result, Number(process.hrtime.bigint() - started) / 1000);
    return { result, auditId, approvalId: approved.approvalId, revision, wireDetails: record.details };
  }

  /**
   * Appends a record that is not a decision (e.g. the MCP gateway's outcome of a forwarded call,
   * linked to its decision's audit id) through the same sink: sealed into this point's chain,
   * safe at its level on resolve. Budgets and approvals are not touched.
   */
  async appendRecord(record: AuditRecord): Promise<void> {
    await this.deps.audit.append(record);
  }

  /** The approval step: ask for one, or use a grant; either needs the approval owner. */
  private async approvals(
    r: DecisionResult,
    input: CheckInput,
    auditId: string,
    requestHash: () => string,
  ): Promise<{ result: DecisionResult; approvalId: string }> {
    const claims = r.claims;
    if (claims === undefined || r.approvalRequest === undefined)
      return { result: r, approvalId: r.approvalId ?? '' };
    const ask = async (base: DecisionResult, note: string | undefined) => {
      try {
        const a = await this.deps.approvals.request({
          source: this.deps.source,
          auditId,
          agentId: claims.agent_id,
          tokenId: claims.token_id,
          action: input.action,
          resource: input.resource,
          context: input.context,
          policyId: r.approvalRequest!.policyId,
          rule: r.approvalRequest!.rule,
        });
        this.local.requested(a);
        return { result: base, approvalId: a.id };
      } catch (err) {
        if (!(err instanceof PortUnavailable)) throw err;
        return {
          result: unavailable(
            base,
            `approval could not be requested (${err.message})${note ? `; ${note}` : ''}`,
          ),
          approvalId: '',
        };
      }
    };

    if (r.decision === 'APPROVAL_REQUIRED') return ask(r, r.approvalNote);
    if (r.decision !== 'ALLOW' || r.approvalId === undefined)
      return { result: r, approvalId: r.approvalId ?? '' };

    // ALLOW through a grant: only once the owner has moved it from APPROVED to USED.
    const approvalId = r.approvalId;
    let consumed;
    try {
      consumed = await this.deps.approvals.consume({
        approvalId,
        agentId: claims.agent_id,
        tokenId: claims.token_id,
        action: input.action,
        resource: input.resource,
        requestHash: requestHash(),
        source: this.deps.source,
        auditId,
      });
    } catch (err) {
      if (!(err instanceof PortUnavailable)) throw err;
      this.deps.budgets.refund(r.usage);
      return {
        result: unavailable(r, `approval ${approvalId} could not be used (${err.message})`),
        approvalId,
      };
    }
    if (consumed.consumed) {
      this.local.used(approvalId);
      return { result: r, approvalId };
    }
    // Used elsewhere a moment ago (or expired): this is a new request.
    this.deps.budgets.refund(r.usage);
    this.local.used(approvalId);
    const note = `approval ${approvalId} ${consumed.reason || 'could not be used'}`;
    const again: DecisionResult = {
      ...r,
      decision: 'APPROVAL_REQUIRED',
      reasonCode: 'APPROVAL_REQUIRED_BY_POLICY',
      reason: `${DEFAULT_REASON_TEXT.APPROVAL_REQUIRED_BY_POLICY}: ${r.approvalRequest.rule}; ${note}, so this is a new request`,
      details: {
        policy_id: r.approvalRequest.policyId,
        rule: r.approvalRequest.rule,
        presented_approval_id: approvalId,
      },
      usage: [],
      approvalNote: note,
    };
    delete again.approvalId;
    return ask(again, note);
  }
}

function unavailable(r: DecisionResult, why: string): DecisionResult {
  const out: DecisionResult = {
    ...r,
    decision: 'DENY',
    reasonCode: 'APPROVAL_UNAVAILABLE',
    reason: `${DEFAULT_REASON_TEXT.APPROVAL_UNAVAILABLE}: ${why}`,
    usage: [],
  };
  delete out.approvalRequest;
  return out;
}

/** How long this point's own approval requests and uses are remembered before its view has them. */
const LOCAL_TTL_MS = 10 * 60_000;

/**
 * Approvals this point asked for or used, overlaid on its view until the view (fed by sync, or
 * the control plane's change feed) catches up: a re-check right after APPROVAL_REQUIRED finds its
 * request pending, and a replay right after a use is refused without asking the owner again.
 */
class LocalApprovals {
  private readonly asked = new Map<string, { a: ApprovalView; at: number }>();
  private readonly spent = new Map<string, number>();

  requested(a: ApprovalView): void {
    this.asked.set(a.id, { a, at: Date.now() });
    this.trim();
  }

  used(id: string): void {
    this.spent.set(id, Date.now());
    this.trim();
  }

  over(view: DecisionView): DecisionView {
    const asked = this.asked;
    const spent = this.spent;
    return {
      get revision() {
        return view.revision;
      },
      publicKey: view.publicKey,
      isRevoked: (id) => view.isRevoked(id),
      agent: (id) => view.agent(id),
      policy: (id) => view.policy(id),
      approval: (id) => {
        const a = view.approval(id);
        if (a !== undefined) asked.delete(id);
        const v = a ?? asked.get(id)?.a;
        if (v !== undefined && spent.has(id)) {
          if (v.status !== 'APPROVED') spent.delete(id);
          else return { ...v, status: 'USED' };
        }
        return v;
      },
    };
  }

  private trim(): void {
    const cutoff = Date.now() - LOCAL_TTL_MS;
    if (this.asked.size > 1000) for (const [k, v] of this.asked) if (v.at < cutoff) this.asked.delete(k);
    if (this.spent.size > 1000) for (const [k, at] of this.spent) if (at < cutoff) this.spent.delete(k);
  }
}
