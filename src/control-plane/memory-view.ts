/**
 * The control plane's in-memory DecisionView for central enforcement: loaded from
 * the store at start, then kept current from the change feed (the same changes sync
 * sends sidecars, applied by the same src/replica/apply-change.ts), so decide() runs
 * synchronously on fresh state. With several replicas on PostgreSQL the feed carries
 * every replica's commits.
 */
import type { KeyObject } from 'node:crypto';
import { fromBase64Url } from '../common/base64url';
import type { Agent, Approval, Policy } from '../gen/act/v1/admin';
import type { Change } from '../gen/act/v1/sync';
import { compilePolicy } from '../policy';
import type { CompiledPolicy } from '../policy/types';
import { applyChange, type ChangeSink } from '../replica/apply-change';
import type { SigningKeyRecord, TokenRecord } from '../store/records';
import type { Store } from '../store/types';
import { publicKeyFromRaw } from '../token';
import type { AgentView, ApprovalView, DecisionView } from '../decision/types';
import { agentFromWire, approvalFromWire } from '../decision/wire';

export class MemoryView implements DecisionView {
  revision = 0;
  private readonly agents = new Map<string, AgentView>();
  private readonly policies = new Map<string, CompiledPolicy>();
  private readonly revoked = new Set<string>();
  private readonly keys = new Map<string, KeyObject>();
  private readonly approvals = new Map<string, ApprovalView>();
  private unsubscribe: (() => void) | undefined;
  /** Called with the approvals a commit changed (waiters, notifications). */
  onApprovals: ((approvals: Approval[]) => void) | undefined;

  private readonly sink: ChangeSink = {
    putAgent: (a) => this.agents.set(a.agent_id, agentFromWire(a)),
    deleteAgent: (id) => this.agents.delete(id),
    putPolicy: (p) => this.putPolicy(p),
    deletePolicy: (id) => this.policies.delete(id),
    putRevocation: (r) => this.revoked.add(r.token_id),
    putPublicKey: (k) => this.keys.set(k.key_id, publicKeyFromRaw(k.public_key)),
    deletePublicKey: (id) => this.keys.delete(id),
    putApproval: (a) => this.approvals.set(a.approval_id, approvalFromWire(a)),
  };

  constructor(private readonly store: Store) {}

  async start(): Promise<void> {
    // Subscribe first so no commit between load and subscribe is missed; changes are idempotent upserts.
    const pending: { revision: number; changes: Change[] }[] = [];
    let loaded = false;
    this.unsubscribe = this.store.onCommit((e) => {
      if (!loaded) pending.push(e);
      else this.apply(e.revision, e.changes);
    });
    this.revision = await this.store.read(async (r) => {
      const all = async <T>(
        table: 'agents' | 'policies' | 'tokens' | 'keys' | 'approvals',
        fn: (v: T) => void,
      ) => {
        let after: string | undefined;
        for (;;) {
          const rows = await r.scan<T>(table, { limit: 1000, ...(after !== undefined ? { after } : {}) });
          for (const row of rows) fn(row.value);
          if (rows.length < 1000) return;
          after = rows[rows.length - 1]!.key;
        }
      };
      await all<Agent>('agents', (a) => this.sink.putAgent(a));
      await all<Policy>('policies', (p) => this.putPolicy(p));
      await all<TokenRecord>('tokens', (t) => t.revoked_at_ms !== 0 && this.revoked.add(t.token_id));
      await all<SigningKeyRecord>('keys', (k) =>
        this.keys.set(k.key_id, publicKeyFromRaw(fromBase64Url(k.public_key)!)),
      );
      await all<Approval>('approvals', (a) => this.sink.putApproval(a));
      return r.revision();
    });
    loaded = true;
    for (const e of pending) if (e.revision > this.revision) this.apply(e.revision, e.changes);
  }

  stop(): void {
    this.unsubscribe?.();
  }

  apply(revision: number, changes: Change[]): void {
    const approvals: Approval[] = [];
    for (const c of changes) {
      applyChange(c, this.sink);
      if (c.kind?.$case === 'approval') approvals.push(c.kind.value);
    }
    this.revision = Math.max(this.revision, revision);
    if (approvals.length > 0 && this.onApprovals) {
      try {
        this.onApprovals(approvals);
      } catch {
        // A faulty waiter must not stop the view.
      }
    }
  }

  private putPolicy(p: Policy): void {
    // Compiled once per policy version; a policy that no longer compiles grants nothing.
    try {
      this.policies.set(p.policy_id, compilePolicy(p));
    } catch {
      this.policies.delete(p.policy_id);
    }
  }

  publicKey = (keyId: string): KeyObject | undefined => this.keys.get(keyId);
  isRevoked(tokenId: string): boolean {
    return this.revoked.has(tokenId);
  }
  agent(agentId: string): AgentView | undefined {
    return this.agents.get(agentId);
  }
  policy(policyId: string): CompiledPolicy | undefined {
    return this.policies.get(policyId);
  }
  approval(approvalId: string): ApprovalView | undefined {
    return this.approvals.get(approvalId);
  }
}
