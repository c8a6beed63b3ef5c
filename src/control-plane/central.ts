/**
 * Central enforcement: the control plane answers checks for agents without a sidecar. It is
 * the enforcement pipeline (src/enforce) wired to the control plane's own parts: its memory
 * view, the budget ledger in process, the approval service in process, and the store's audit
 * trail as this replica's hash-chained source.
 */
import type { Clock } from '../common/clock';
import { ActError } from '../common/errors';
import { approvalFromWire } from '../decision/wire';
import type { DecisionResult } from '../decision/types';
import { Enforcer, LeaseBudgets, PortUnavailable, type ApprovalPort, type LeasePort } from '../enforce';
import type { Store } from '../store/types';
import type { ApprovalService } from './approvals';
import { StoreAuditSink } from './audit-sink';
import type { BudgetLedger } from './budget-ledger';
import type { MemoryView } from './memory-view';

/** The chain source of central decisions on the embedded store (one process). */
export const CONTROL_PLANE_SOURCE = 'control-plane';

export interface CentralDeps {
  store: Store;
  view: MemoryView;
  approvals: ApprovalService;
  ledger: BudgetLedger;
  clock: Clock;
  /** This replica's chain source: CONTROL_PLANE_SOURCE, or `control-plane:<replica>` with several. */
  source: string;
  onDecision?: (r: DecisionResult, latencyUs: number) => void;
}

export interface Central {
  enforcer: Enforcer;
  budgets: LeaseBudgets;
  stop(): Promise<void>;
}

/** Store faults (e.g. PostgreSQL unreachable) make the owner unavailable; domain errors pass. */
function owner<T>(p: Promise<T>): Promise<T> {
  return p.catch((err: unknown) => {
    if (err instanceof ActError) throw err;
    throw new PortUnavailable(err instanceof Error ? err.message : String(err), { cause: err });
  });
}

export async function startCentral(d: CentralDeps): Promise<Central> {
  const leases: LeasePort = {
    lease: (r) => owner(d.ledger.lease(r)),
    release: async (rs) => {
      await d.ledger.release(rs);
    },
  };
  const approvals: ApprovalPort = {
    request: async (i) => approvalFromWire(await owner(d.approvals.request(i))),
    consume: (i) => owner(d.approvals.consume(i)),
  };
  const budgets = new LeaseBudgets(leases);
  const audit = await StoreAuditSink.open(d.store, d.source);
  const enforcer = new Enforcer({
    view: d.view,
    budgets,
    approvals,
    audit,
    clock: d.clock,
    source: d.source,
    ...(d.onDecision ? { onDecision: d.onDecision } : {}),
  });
  const prune = setInterval(() => budgets.prune(), 60_000);
  prune.unref();
  return {
    enforcer,
    budgets,
    async stop() {
      clearInterval(prune);
      await audit.flush();
      await budgets.release().catch(() => 0);
    },
  };
}
