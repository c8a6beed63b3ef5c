/**
 * The sidecar's wiring of the enforcement pipeline's ports: approvals and budget leases are
 * calls to the control plane over the Sync channel (the grant is used, and budget units are
 * leased, at the owner); the audit sink is the durable spool.
 */
import { approvalFromWire } from '../decision/wire';
import type { ApprovalPort, AuditSink, LeasePort } from '../enforce';
import type { AuditRecord } from '../gen/act/v1/admin';
import { BudgetKind } from '../gen/act/v1/sync';
import { CALL_DEADLINE_MS, type SyncClient } from '../sync/client';

export function remoteApprovals(sync: SyncClient): ApprovalPort {
  return {
    async request(i) {
      const a = await sync.requestApproval({
        source: i.source,
        audit_id: i.auditId,
        agent_id: i.agentId,
        token_id: i.tokenId,
        action: i.action,
        resource: i.resource,
        context: i.context,
        policy_id: i.policyId,
        rule: i.rule,
      });
      return approvalFromWire(a);
    },
    async consume(i) {
      const r = await sync.consumeApproval({
        approval_id: i.approvalId,
        token_id: i.tokenId,
        action: i.action,
        resource: i.resource,
        request_hash: i.requestHash,
        source: i.source,
        audit_id: i.auditId,
        agent_id: i.agentId,
        // Well before the sync client stops waiting (with the control plane's clock allowance of
        // 0.5 s): a consume that arrives later must not count, since the check fails closed then.
        not_after_ms: Date.now() + CALL_DEADLINE_MS - 700,
      });
      return { consumed: r.consumed, reason: r.reason };
    },
  };
}

export function remoteLeases(sync: SyncClient, source: string): LeasePort {
  return {
    async lease(r) {
      const g = await sync.leaseBudget({
        source,
        agent_id: r.agentId,
        policy_id: r.policyId,
        kind: r.kind === 'DAILY' ? BudgetKind.DAILY : BudgetKind.RATE,
        want: r.want,
      });
      return {
        leaseId: g.lease_id,
        granted: g.granted,
        window: g.window,
        validMs: g.valid_ms,
        remaining: g.remaining,
        retryAfterMs: g.retry_after_ms,
        limit: g.limit,
      };
    },
    async release(returns) {
      await sync.releaseBudget({
        source,
        returns: returns.map((x) => ({
          lease_id: x.leaseId,
          agent_id: x.agentId,
          policy_id: x.policyId,
          window: x.window,
          unused: x.unused,
        })),
      });
    },
  };
}

/** The spool as the pipeline's audit sink: sealed into this sidecar's chain, safe at its level. */
export function spoolSink(spool: { append(r: AuditRecord): Promise<void> }): AuditSink {
  return { append: (r) => spool.append(r) };
}
