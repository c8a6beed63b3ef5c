/**
 * Central enforcement: the control plane answers checks for agents without a
 * sidecar, with the same decide() over its in-memory view, and writes the audit
 * record (hash-chained as source "control-plane") before it answers.
 */
import { AuditChain } from '../audit/chain';
import { buildAuditRecord } from '../audit/record';
import type { Clock } from '../common/clock';
import { newSortableId } from '../common/ids';
import { decide, InMemoryCounters } from '../decision';
import { toDecisionRequest, type CheckInput } from '../decision/request';
import type { CheckOutcome } from '../decision/wire';
import type { DecisionResult } from '../decision/types';
import type { Store } from '../store/types';
import { VerificationCache } from '../token';
import type { AdminService } from './admin-service';
import type { MemoryView } from './memory-view';

export const CONTROL_PLANE_SOURCE = 'control-plane';

export class CentralEnforcer {
  private readonly counters = new InMemoryCounters();
  private readonly verifier = new VerificationCache(100_000);
  private chain: AuditChain | undefined;
  private pruneTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly store: Store,
    private readonly view: MemoryView,
    private readonly admin: AdminService,
    private readonly clock: Clock,
    private readonly onDecision: (r: DecisionResult, latencyUs: number) => void = () => {},
  ) {}

  async start(): Promise<void> {
    const last = await this.store.audit.lastOfSource(CONTROL_PLANE_SOURCE);
    this.chain = new AuditChain(CONTROL_PLANE_SOURCE, last?.seq ?? 0, last?.hash ?? '');
    this.pruneTimer = setInterval(() => this.counters.prune(this.clock()), 60_000);
    this.pruneTimer.unref();
  }

  stop(): void {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
  }

  async check(input: CheckInput): Promise<CheckOutcome> {
    const started = process.hrtime.bigint();
    const nowMs = this.clock();
    const result = decide(toDecisionRequest(input), {
      view: this.view,
      verifier: this.verifier,
      counters: this.counters,
      nowMs,
    });
    // Consume budgets synchronously with the decision so concurrent checks cannot overspend.
    this.counters.apply(result.usage);
    const revision = this.view.revision;
    const auditId = newSortableId('audit', nowMs);

    let approvalId = result.approvalId ?? '';
    if (result.decision === 'APPROVAL_REQUIRED' && result.approvalRequest && result.claims) {
      const a = await this.admin.createApproval({
        agent_id: result.claims.agent_id,
        token_id: result.claims.token_id,
        action: input.action,
        resource: input.resource,
        context: input.context,
        policy_id: result.approvalRequest.policyId,
        rule: result.approvalRequest.rule,
        audit_id: auditId,
        request_hash: '',
        source: CONTROL_PLANE_SOURCE,
        agent_name: '',
        used_at: '',
        used_audit_id: '',
        used_by: '',
      });
      approvalId = a.approval_id;
    } else if (result.decision === 'ALLOW' && result.approvalId) {
      await this.admin.consumeApproval(result.approvalId);
    }

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
      approvalId,
    });
    this.chain!.seal(record);
    // The answer waits for the audit record's durable commit.
    await this.store.audit.append([record]);
    this.onDecision(result, latencyUs);
    return { result, auditId, approvalId, revision, wireDetails: record.details };
  }
}
