/**
 * What a sidecar may see: its agents, the policies their live tokens name, their
 * revocations and approvals, and every public key. "*" (or no agent ids) is all.
 */
import type { Change } from '../gen/act/v1/sync';

export const ALL_AGENTS = '*';

export interface TokenLite {
  token_id: string;
  agent_id: string;
  policy_ids: string[];
  expires_at_ms: number;
  revoked_at_ms: number;
}

export class SyncScope {
  readonly all: boolean;
  readonly agents: ReadonlySet<string>;
  /** Policies named by live tokens of the scoped agents (unused when all). */
  readonly policies = new Set<string>();

  constructor(agentIds: readonly string[]) {
    this.all = agentIds.length === 0 || agentIds.includes(ALL_AGENTS);
    this.agents = new Set(this.all ? [] : agentIds);
  }

  hasAgent(id: string): boolean {
    return this.all || this.agents.has(id);
  }

  hasPolicy(id: string): boolean {
    return this.all || this.policies.has(id);
  }

  /** Notes a token's policies; returns the ones that are new to the scope. */
  addToken(t: Pick<TokenLite, 'agent_id' | 'policy_ids'>): string[] {
    if (this.all || !this.agents.has(t.agent_id)) return [];
    const added: string[] = [];
    for (const p of t.policy_ids) {
      if (!this.policies.has(p)) {
        this.policies.add(p);
        added.push(p);
      }
    }
    return added;
  }

  /** Whether a change is for this sidecar (token_issued is internal and never sent). */
  admits(c: Change): boolean {
    const k = c.kind;
    if (k === undefined) return false;
    switch (k.$case) {
      case 'agent':
        return this.hasAgent(k.value.agent_id);
      case 'agent_deleted':
        return this.hasAgent(k.value);
      case 'policy':
        return this.hasPolicy(k.value.policy_id);
      case 'policy_deleted':
        return this.hasPolicy(k.value);
      case 'revocation':
        // Records written before revocations carried an agent id go everywhere (safe side).
        return k.value.agent_id === '' || this.hasAgent(k.value.agent_id);
      case 'approval':
        return this.hasAgent(k.value.agent_id);
      case 'public_key':
      case 'public_key_deleted':
        return true;
      case 'token_issued':
        return false;
    }
  }
}
