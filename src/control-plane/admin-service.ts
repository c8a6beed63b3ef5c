/**
 * The control plane's domain operations: one implementation behind both the
 * REST routes and the gRPC AdminService. Validates every field, writes each
 * mutation in one store transaction with its change events, and never leaves
 * anything partial behind (a validation error throws before the commit).
 */
import { ActError, invalid, notFound } from '../common/errors';
import type { Clock } from '../common/clock';
import { isId, newSortableId } from '../common/ids';
import { Decision } from '../gen/act/v1/decision';
import {
  Agent,
  AgentStatus,
  Approval,
  Policy,
  PolicyConstraints,
  Rule,
  type AttenuateTokenRequest,
  type AuditRecord,
  type CreatePolicyRequest,
  type IssueTokenResponse,
  type TokenInfo,
} from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import { Revocation, TokenIssued } from '../gen/act/v1/sync';
import { TokenClaims } from '../gen/act/v1/token';
import { capabilityCovers, compilePolicy, parseCapability, validatePolicyInput } from '../policy';
import type { Capability } from '../policy/types';
import type { Store, StoreReader, StoreWriter } from '../store/types';
import { attenuateClaims, signToken } from '../token';
import { idx, type SigningKeyRecord, type TokenRecord } from './records';
import type { SigningKeys } from './signing-keys';
import {
  LIMITS,
  decodeCursor,
  encodeCursor,
  formatTime,
  optionalString,
  pageSize,
  parseTime,
  requireId,
  requireString,
  validateMetadata,
} from './validate';

export interface AdminConfig {
  /** Longest token lifetime accepted at issue (default 365 days). */
  maxTokenLifetimeMs: number;
  /** Token lifetime when expires_at is omitted (default 24 hours). */
  defaultTokenLifetimeMs: number;
  /** How long an approval request stays open (default 24 hours). */
  approvalTtlMs: number;
}

export const DEFAULT_ADMIN_CONFIG: AdminConfig = {
  maxTokenLifetimeMs: 365 * 86_400_000,
  defaultTokenLifetimeMs: 86_400_000,
  approvalTtlMs: 86_400_000,
};

type Json = Record<string, unknown>;

export class AdminService {
  constructor(
    private readonly store: Store,
    private readonly keys: SigningKeys,
    private readonly clock: Clock,
    private readonly config: AdminConfig = DEFAULT_ADMIN_CONFIG,
  ) {}

  // ---- agents ----

  async createAgent(body: Json): Promise<Agent> {
    const name = requireString(body.name, 'name', { min: 1, max: LIMITS.name }).trim();
    if (name === '') throw invalid('name', 'name is required');
    const description = optionalString(body.description, 'description', LIMITS.description);
    const metadata = validateMetadata(body.metadata);
    const now = formatTime(this.clock());
    const agent = Agent.fromPartial({
      agent_id: newSortableId('agent', this.clock()),
      name,
      description,
      metadata,
      status: AgentStatus.ACTIVE,
      created_at: now,
      updated_at: now,
    });
    await this.store.write(async (w) => {
      if (await w.get('index', idx.agentName(name))) {
        throw new ActError('ALREADY_EXISTS', `an agent named ${JSON.stringify(name)} already exists`, {
          field: 'name',
        });
      }
      w.put('agents', agent.agent_id, agent);
      w.put('index', idx.agentName(name), agent.agent_id);
      w.emit({ kind: { $case: 'agent', value: agent } });
    });
    return agent;
  }

  async getAgent(id: unknown): Promise<Agent> {
    const agentId = requireId(id, 'agent', 'agent_id');
    const a = await this.store.read((r) => r.get<Agent>('agents', agentId));
    if (!a) throw notFound('agent', agentId, 'agent_id');
    return a;
  }

  async listAgents(q: Json): Promise<{ agents: Agent[]; next_cursor: string }> {
    const limit = pageSize(q.limit, 50, LIMITS.pageSize);
    const status = parseAgentStatusFilter(q.status);
    const contains = optionalString(q.name_contains, 'name_contains', LIMITS.name).toLowerCase();
    const { items, next } = await this.store.read((r) =>
      filteredPage<Agent>(
        r,
        'agents',
        decodeCursor(q.cursor),
        limit,
        (a) =>
          (status === undefined || a.status === status) &&
          (contains === '' || a.name.toLowerCase().includes(contains)),
      ),
    );
    return { agents: items, next_cursor: encodeCursor(next) };
  }

  async updateAgent(id: unknown, body: Json): Promise<Agent> {
    const agentId = requireId(id, 'agent', 'agent_id');
    const description =
      body.description === undefined
        ? undefined
        : optionalString(body.description, 'description', LIMITS.description);
    const metadata = body.metadata === undefined ? undefined : validateMetadata(body.metadata);
    for (const k of Object.keys(body)) {
      if (!['description', 'metadata', 'agent_id', 'replace_metadata'].includes(k)) {
        throw invalid(k, `${k} cannot be changed (changeable: description, metadata)`);
      }
    }
    return this.mutateAgent(agentId, (a) => {
      if (description !== undefined) a.description = description;
      if (metadata !== undefined) a.metadata = metadata;
    });
  }

  async setAgentStatus(id: unknown, enabled: boolean): Promise<Agent> {
    const agentId = requireId(id, 'agent', 'agent_id');
    return this.mutateAgent(agentId, (a) => {
      a.status = enabled ? AgentStatus.ACTIVE : AgentStatus.DISABLED;
    });
  }

  private async mutateAgent(agentId: string, fn: (a: Agent) => void): Promise<Agent> {
    const { result } = await this.store.write(async (w) => {
      const a = await w.get<Agent>('agents', agentId);
      if (!a) throw notFound('agent', agentId, 'agent_id');
      const next = Agent.fromPartial(a);
      fn(next);
      next.updated_at = formatTime(this.clock());
      w.put('agents', agentId, next);
      w.emit({ kind: { $case: 'agent', value: next } });
      return next;
    });
    return result;
  }

  /** Deletes an agent and revokes all its tokens (and their descendants). */
  async deleteAgent(id: unknown): Promise<{ id: string; deleted: boolean; revoked_token_ids: string[] }> {
    const agentId = requireId(id, 'agent', 'agent_id');
    const { result } = await this.store.write(async (w) => {
      const a = await w.get<Agent>('agents', agentId);
      if (!a) throw notFound('agent', agentId, 'agent_id');
      const tokenIds = (await scanAll(w, 'index', idx.agentTokenPrefix(agentId))).map((k) =>
        k.slice(idx.agentTokenPrefix(agentId).length),
      );
      const revoked: string[] = [];
      for (const t of tokenIds) revoked.push(...(await this.revokeTree(w, t, 'agent deleted')));
      w.del('agents', agentId);
      w.del('index', idx.agentName(a.name));
      w.emit({ kind: { $case: 'agent_deleted', value: agentId } });
      return revoked;
    });
    return { id: agentId, deleted: true, revoked_token_ids: result };
  }

  // ---- policies ----

  async createPolicy(body: Json): Promise<Policy> {
    const input = normalizePolicyInput(body);
    const now = formatTime(this.clock());
    const policy = Policy.fromPartial({
      ...input,
      policy_id: newSortableId('policy', this.clock()),
      version: 1,
      created_at: now,
      updated_at: now,
    });
    compilePolicy(policy); // proves it compiles (CEL, constraints) before anything is written
    await this.store.write(async (w) => {
      if (await w.get('index', idx.policyName(policy.name))) {
        throw new ActError('ALREADY_EXISTS', `a policy named ${JSON.stringify(policy.name)} already exists`, {
          field: 'name',
        });
      }
      w.put('policies', policy.policy_id, policy);
      w.put('index', idx.policyName(policy.name), policy.policy_id);
      w.emit({ kind: { $case: 'policy', value: policy } });
    });
    return policy;
  }

  async getPolicy(id: unknown): Promise<Policy> {
    const policyId = requireId(id, 'policy', 'policy_id');
    const p = await this.store.read((r) => r.get<Policy>('policies', policyId));
    if (!p) throw notFound('policy', policyId, 'policy_id');
    return p;
  }

  async listPolicies(q: Json): Promise<{ policies: Policy[]; next_cursor: string }> {
    const limit = pageSize(q.limit, 50, LIMITS.pageSize);
    const contains = optionalString(q.name_contains, 'name_contains', LIMITS.name).toLowerCase();
    const { items, next } = await this.store.read((r) =>
      filteredPage<Policy>(
        r,
        'policies',
        decodeCursor(q.cursor),
        limit,
        (p) => contains === '' || p.name.toLowerCase().includes(contains),
      ),
    );
    return { policies: items, next_cursor: encodeCursor(next) };
  }

  /** Replaces a policy's definition with a new version; live tokens see it at once. */
  async updatePolicy(id: unknown, body: Json): Promise<Policy> {
    const policyId = requireId(id, 'policy', 'policy_id');
    const input = normalizePolicyInput(body);
    const { result } = await this.store.write(async (w) => {
      const old = await w.get<Policy>('policies', policyId);
      if (!old) throw notFound('policy', policyId, 'policy_id');
      const next = Policy.fromPartial({
        ...input,
        policy_id: policyId,
        version: old.version + 1,
        created_at: old.created_at,
        updated_at: formatTime(this.clock()),
      });
      compilePolicy(next);
      if (next.name.toLowerCase() !== old.name.toLowerCase()) {
        if (await w.get('index', idx.policyName(next.name))) {
          throw new ActError('ALREADY_EXISTS', `a policy named ${JSON.stringify(next.name)} already exists`, {
            field: 'name',
          });
        }
        w.del('index', idx.policyName(old.name));
        w.put('index', idx.policyName(next.name), policyId);
      }
      w.put('policies', policyId, next);
      w.emit({ kind: { $case: 'policy', value: next } });
      return next;
    });
    return result;
  }

  async deletePolicy(id: unknown): Promise<{ id: string; deleted: boolean }> {
    const policyId = requireId(id, 'policy', 'policy_id');
    await this.store.write(async (w) => {
      const p = await w.get<Policy>('policies', policyId);
      if (!p) throw notFound('policy', policyId, 'policy_id');
      w.del('policies', policyId);
      w.del('index', idx.policyName(p.name));
      w.emit({ kind: { $case: 'policy_deleted', value: policyId } });
    });
    return { id: policyId, deleted: true };
  }

  // ---- tokens ----

  async issueToken(body: Json): Promise<IssueTokenResponse> {
    const agentId = requireId(body.agent_id, 'agent', 'agent_id');
    if (!Array.isArray(body.policy_ids) || body.policy_ids.length === 0) {
      throw invalid('policy_ids', 'policy_ids must be a non-empty array of policy ids');
    }
    if (body.policy_ids.length > LIMITS.policyIdsPerToken) {
      throw invalid('policy_ids', `a token may name at most ${LIMITS.policyIdsPerToken} policies`);
    }
    const policyIds = body.policy_ids.map((p, i) => requireId(p, 'policy', `policy_ids[${i}]`));
    if (new Set(policyIds).size !== policyIds.length)
      throw invalid('policy_ids', 'policy_ids has duplicates');
    const now = this.clock();
    const expiresAt = this.expiry(body.expires_at, now, Infinity);
    const notBefore =
      body.not_before === undefined || body.not_before === ''
        ? now
        : parseTime(body.not_before, 'not_before');
    if (notBefore >= expiresAt) throw invalid('not_before', 'not_before must be before expires_at');
    const metadata = validateMetadata(body.metadata, 'metadata', 32);

    const key = this.keys.active();
    const { result } = await this.store.write(async (w) => {
      const agent = await w.get<Agent>('agents', agentId);
      if (!agent) throw notFound('agent', agentId, 'agent_id');
      if (agent.status !== AgentStatus.ACTIVE) {
        throw new ActError(
          'FAILED_PRECONDITION',
          `agent ${agentId} is disabled; enable it before issuing tokens`,
          { field: 'agent_id' },
        );
      }
      const policies: Policy[] = [];
      for (const [i, id] of policyIds.entries()) {
        const p = await w.get<Policy>('policies', id);
        if (!p) throw notFound('policy', id, `policy_ids[${i}]`);
        policies.push(p);
      }
      const claims = TokenClaims.fromPartial({
        version: 1,
        key_id: key.keyId,
        token_id: newSortableId('tok', now),
        agent_id: agentId,
        policy_ids: policyIds,
        issued_at_ms: now,
        not_before_ms: notBefore,
        expires_at_ms: expiresAt,
        metadata,
      });
      const token = signToken(claims, key);
      await this.recordToken(w, claims);
      return { token, claims, capabilities: unionCapabilities(policies) };
    });
    return {
      token: result.token,
      token_id: result.claims.token_id,
      agent_id: agentId,
      expires_at: formatTime(expiresAt),
      capabilities: result.capabilities,
      policy_ids: policyIds,
      parent_token_id: '',
    };
  }

  async attenuateToken(
    id: unknown,
    body: Partial<AttenuateTokenRequest> & Json,
  ): Promise<IssueTokenResponse> {
    const parentId = requireId(id, 'tok', 'token_id');
    if (!Array.isArray(body.capabilities))
      throw invalid('capabilities', 'capabilities must be an array of capabilities');
    const caps = body.capabilities.map((c, i) => {
      const s = requireString(c, `capabilities[${i}]`, { min: 1, max: 512 });
      parseCapability(s, `capabilities[${i}]`);
      return s;
    });
    const metadata = validateMetadata(body.metadata, 'metadata', 32);
    const childAgent =
      body.agent_id === undefined || body.agent_id === ''
        ? undefined
        : requireId(body.agent_id, 'agent', 'agent_id');
    const now = this.clock();
    const key = this.keys.active();
    const { result } = await this.store.write(async (w) => {
      const parent = await w.get<TokenRecord>('tokens', parentId);
      if (!parent) throw notFound('token', parentId, 'token_id');
      if (parent.revoked_at_ms !== 0)
        throw new ActError('FAILED_PRECONDITION', `token ${parentId} is revoked`, { field: 'token_id' });
      if (parent.expires_at_ms <= now)
        throw new ActError('FAILED_PRECONDITION', `token ${parentId} has expired`, { field: 'token_id' });
      const expiresAt =
        body.expires_at === undefined || body.expires_at === ''
          ? parent.expires_at_ms
          : this.expiry(body.expires_at, now, parent.expires_at_ms);
      const agentId = childAgent ?? parent.agent_id;
      const agent = await w.get<Agent>('agents', agentId);
      if (!agent) throw notFound('agent', agentId, 'agent_id');
      if (agent.status !== AgentStatus.ACTIVE)
        throw new ActError('FAILED_PRECONDITION', `agent ${agentId} is disabled`, { field: 'agent_id' });
      // The parent's rights now: its policies' grants, narrowed by its own attenuation.
      const policyCaps: Capability[] = [];
      for (const pid of parent.policy_ids) {
        const p = await w.get<Policy>('policies', pid);
        if (p) for (const c of p.capabilities) policyCaps.push(parseCapability(c));
      }
      const parentAtt = parent.attenuated ? parent.attenuation.map((c) => parseCapability(c)) : undefined;
      const covers = (_: string[] | undefined, cap: string): boolean => {
        const inner = parseCapability(cap);
        const byPolicy = policyCaps.some((o) => capabilityCovers(o, inner));
        const byAtt = parentAtt === undefined || parentAtt.some((o) => capabilityCovers(o, inner));
        return byPolicy && byAtt;
      };
      const claims = attenuateClaims(toClaims(parent), {
        tokenId: newSortableId('tok', now),
        keyId: key.keyId,
        nowMs: now,
        capabilities: caps,
        expiresAtMs: expiresAt,
        agentId,
        metadata,
        covers,
      });
      const token = signToken(claims, key);
      await this.recordToken(w, claims);
      return { token, claims };
    });
    return {
      token: result.token,
      token_id: result.claims.token_id,
      agent_id: result.claims.agent_id,
      expires_at: formatTime(result.claims.expires_at_ms),
      capabilities: result.claims.attenuation,
      policy_ids: result.claims.policy_ids,
      parent_token_id: parentId,
    };
  }

  private expiry(v: unknown, now: number, notAfter: number): number {
    if (v === undefined || v === null || v === '')
      return Math.min(now + this.config.defaultTokenLifetimeMs, notAfter);
    const t = parseTime(v, 'expires_at');
    if (t <= now) throw invalid('expires_at', 'expires_at must be in the future');
    if (t > now + this.config.maxTokenLifetimeMs) {
      throw invalid(
        'expires_at',
        `expires_at may be at most ${Math.round(this.config.maxTokenLifetimeMs / 86_400_000)} days away`,
      );
    }
    if (t > notAfter)
      throw invalid(
        'expires_at',
        `expires_at may not be later than the parent token's expiry (${formatTime(notAfter)})`,
      );
    return t;
  }

  private async recordToken(w: StoreWriter, c: TokenClaims): Promise<void> {
    const rec: TokenRecord = {
      token_id: c.token_id,
      agent_id: c.agent_id,
      policy_ids: c.policy_ids,
      attenuated: c.attenuated,
      attenuation: c.attenuation,
      parent_token_id: c.parent_token_id,
      ancestor_token_ids: c.ancestor_token_ids,
      issued_at_ms: c.issued_at_ms,
      not_before_ms: c.not_before_ms,
      expires_at_ms: c.expires_at_ms,
      metadata: c.metadata,
      key_id: c.key_id,
      revoked_at_ms: 0,
      revoke_reason: '',
    };
    w.put('tokens', c.token_id, rec);
    w.put('index', idx.agentToken(c.agent_id, c.token_id), 1);
    if (c.parent_token_id) w.put('index', idx.tokenChild(c.parent_token_id, c.token_id), 1);
    const key = await w.get<SigningKeyRecord>('keys', c.key_id);
    if (key && key.max_token_expiry_ms < c.expires_at_ms)
      w.put('keys', c.key_id, { ...key, max_token_expiry_ms: c.expires_at_ms });
    w.emit({
      kind: {
        $case: 'token_issued',
        value: TokenIssued.fromPartial({
          token_id: c.token_id,
          agent_id: c.agent_id,
          policy_ids: c.policy_ids,
          expires_at_ms: c.expires_at_ms,
        }),
      },
    });
  }

  async getToken(id: unknown): Promise<TokenInfo> {
    const tokenId = requireId(id, 'tok', 'token_id');
    const rec = await this.store.read((r) => r.get<TokenRecord>('tokens', tokenId));
    if (!rec) throw notFound('token', tokenId, 'token_id');
    return tokenInfo(rec);
  }

  async listTokens(q: Json): Promise<{ tokens: TokenInfo[]; next_cursor: string }> {
    const limit = pageSize(q.limit, 50, LIMITS.pageSize);
    const agentId =
      q.agent_id === undefined || q.agent_id === '' ? undefined : requireId(q.agent_id, 'agent', 'agent_id');
    const includeInactive = q.include_inactive === true || q.include_inactive === 'true';
    const now = this.clock();
    const { items, next } = await this.store.read((r) =>
      filteredPage<TokenRecord>(
        r,
        'tokens',
        decodeCursor(q.cursor),
        limit,
        (t) =>
          (agentId === undefined || t.agent_id === agentId) &&
          (includeInactive || (t.revoked_at_ms === 0 && t.expires_at_ms > now)),
      ),
    );
    return { tokens: items.map(tokenInfo), next_cursor: encodeCursor(next) };
  }

  /** Revokes a token and every token derived from it, in one transaction. */
  async revokeToken(
    id: unknown,
    body: Json = {},
  ): Promise<{ revoked_token_ids: string[]; revision: number }> {
    const tokenId = requireId(id, 'tok', 'token_id');
    const reason = optionalString(body.reason, 'reason', 500);
    const { result, revision } = await this.store.write(async (w) => {
      if (!(await w.get('tokens', tokenId))) throw notFound('token', tokenId, 'token_id');
      return this.revokeTree(w, tokenId, reason);
    });
    return { revoked_token_ids: result, revision };
  }

  private async revokeTree(w: StoreWriter, rootId: string, reason: string): Promise<string[]> {
    const now = this.clock();
    const revoked: string[] = [];
    const queue = [rootId];
    while (queue.length > 0) {
      const id = queue.shift()!;
      const rec = await w.get<TokenRecord>('tokens', id);
      if (!rec) continue;
      if (rec.revoked_at_ms === 0) {
        w.put('tokens', id, { ...rec, revoked_at_ms: now, revoke_reason: reason });
        w.emit({
          kind: {
            $case: 'revocation',
            value: Revocation.fromPartial({
              token_id: id,
              revoked_at_ms: now,
              expires_at_ms: rec.expires_at_ms,
              // Scoped sidecars get only their agents' revocations (an empty id goes to every sidecar).
              agent_id: rec.agent_id,
            }),
          },
        });
      }
      revoked.push(id);
      for (const k of await scanAll(w, 'index', idx.tokenChildPrefix(id)))
        queue.push(k.slice(idx.tokenChildPrefix(id).length));
    }
    return revoked;
  }

  // ---- approvals ----

  async listApprovals(q: Json): Promise<{ approvals: Approval[]; next_cursor: string }> {
    const limit = pageSize(q.limit, 50, LIMITS.pageSize);
    const status = parseEnumFilter(q.status, ApprovalStatus, 'status');
    const agentId =
      q.agent_id === undefined || q.agent_id === '' ? undefined : requireId(q.agent_id, 'agent', 'agent_id');
    const { items, next } = await this.store.read((r) =>
      filteredPage<Approval>(
        r,
        'approvals',
        decodeCursor(q.cursor),
        limit,
        (a) =>
          (status === undefined || a.status === status) && (agentId === undefined || a.agent_id === agentId),
      ),
    );
    return { approvals: items, next_cursor: encodeCursor(next) };
  }

  async getApproval(id: unknown): Promise<Approval> {
    const approvalId = requireId(id, 'approval', 'approval_id');
    const a = await this.store.read((r) => r.get<Approval>('approvals', approvalId));
    if (!a) throw notFound('approval', approvalId, 'approval_id');
    return a;
  }

  /** Records a human's decision on a pending approval. */
  async resolveApproval(id: unknown, approve: boolean, body: Json, resolvedBy: string): Promise<Approval> {
    const approvalId = requireId(id, 'approval', 'approval_id');
    const comment = optionalString(body.comment, 'comment', LIMITS.comment);
    const now = this.clock();
    const { result } = await this.store.write(async (w) => {
      const a = await w.get<Approval>('approvals', approvalId);
      if (!a) throw notFound('approval', approvalId, 'approval_id');
      if (a.status !== ApprovalStatus.PENDING) {
        throw new ActError(
          'FAILED_PRECONDITION',
          `approval ${approvalId} is ${ApprovalStatus[a.status]}, not PENDING`,
          { field: 'approval_id' },
        );
      }
      if (Date.parse(a.expires_at) <= now) {
        const expired = { ...a, status: ApprovalStatus.EXPIRED };
        w.put('approvals', approvalId, expired);
        w.emit({ kind: { $case: 'approval', value: expired } });
        return expired;
      }
      const next = Approval.fromPartial({
        ...a,
        status: approve ? ApprovalStatus.APPROVED : ApprovalStatus.DENIED,
        resolved_by: resolvedBy,
        resolved_at: formatTime(now),
        comment,
      });
      w.put('approvals', approvalId, next);
      w.emit({ kind: { $case: 'approval', value: next } });
      return next;
    });
    if (result.status === ApprovalStatus.EXPIRED) {
      throw new ActError('FAILED_PRECONDITION', `approval ${approvalId} expired at ${result.expires_at}`, {
        field: 'approval_id',
      });
    }
    return result;
  }

  /** Creates a pending approval for a check that a policy's approval rule stopped. */
  async createApproval(
    a: Omit<
      Approval,
      'approval_id' | 'status' | 'created_at' | 'expires_at' | 'resolved_by' | 'resolved_at' | 'comment'
    >,
  ): Promise<Approval> {
    const now = this.clock();
    const approval = Approval.fromPartial({
      ...a,
      approval_id: newSortableId('approval', now),
      status: ApprovalStatus.PENDING,
      created_at: formatTime(now),
      expires_at: formatTime(now + this.config.approvalTtlMs),
    });
    await this.store.write(async (w) => {
      w.put('approvals', approval.approval_id, approval);
      w.emit({ kind: { $case: 'approval', value: approval } });
    });
    return approval;
  }

  /**
   * Applies what sidecars decided about approvals, from their audit records: an
   * APPROVAL_REQUIRED record announces a new pending approval under the id the
   * sidecar chose; an ALLOW that presented an approval uses it up.
   */
  async applySidecarDecisions(records: AuditRecord[]): Promise<void> {
    for (const r of records) {
      if (!r.approval_id || !isId(r.approval_id, 'approval')) continue;
      if (r.decision === Decision.APPROVAL_REQUIRED) {
        const exists = await this.store.read((rd) => rd.get<Approval>('approvals', r.approval_id));
        if (exists) continue;
        const created = Date.parse(r.time);
        const approval = Approval.fromPartial({
          approval_id: r.approval_id,
          status: ApprovalStatus.PENDING,
          agent_id: r.agent_id,
          token_id: r.token_id,
          action: r.action,
          resource: r.resource,
          context: r.context ?? {},
          policy_id: r.details?.policy_id ?? '',
          rule: r.details?.rule ?? r.reason,
          created_at: formatTime(created),
          expires_at: formatTime(created + this.config.approvalTtlMs),
          audit_id: r.audit_id,
        });
        await this.store.write(async (w) => {
          if (await w.get('approvals', approval.approval_id)) return;
          w.put('approvals', approval.approval_id, approval);
          w.emit({ kind: { $case: 'approval', value: approval } });
        });
      } else if (r.decision === Decision.ALLOW) {
        await this.consumeApproval(r.approval_id);
      }
    }
  }

  /** Marks an approved approval as used by the check it allowed (one use). */
  async consumeApproval(approvalId: string): Promise<void> {
    await this.store.write(async (w) => {
      const a = await w.get<Approval>('approvals', approvalId);
      if (!a || a.status !== ApprovalStatus.APPROVED) return;
      const used = { ...a, status: ApprovalStatus.USED };
      w.put('approvals', approvalId, used);
      w.emit({ kind: { $case: 'approval', value: used } });
    });
  }

  // ---- keys ----

  async listSigningKeys(): Promise<{
    keys: { key_id: string; public_key: string; created_at: string; active: boolean }[];
  }> {
    const rows = await this.store.read((r) => r.scan<SigningKeyRecord>('keys', { limit: 10_000 }));
    const active = this.keys.active().keyId;
    const keys = rows
      .map((r) => r.value)
      .sort((a, b) => b.created_at_ms - a.created_at_ms)
      .map((k) => ({
        key_id: k.key_id,
        public_key: k.public_key,
        created_at: formatTime(k.created_at_ms),
        active: k.key_id === active,
      }));
    return { keys };
  }

  async rotateSigningKey(): Promise<{
    key_id: string;
    public_key: string;
    created_at: string;
    active: boolean;
  }> {
    const k = await this.keys.rotate();
    return {
      key_id: k.keyId,
      public_key: Buffer.from(k.publicKeyRaw).toString('base64url'),
      created_at: formatTime(k.createdAtMs),
      active: true,
    };
  }
}

// ---- helpers ----

function normalizePolicyInput(body: Json): CreatePolicyRequest {
  const known = new Set([
    'name',
    'description',
    'capabilities',
    'constraints',
    'conditions',
    'approval_rules',
    'policy_id',
  ]);
  for (const k of Object.keys(body))
    if (!known.has(k)) throw invalid(k, `unknown field ${JSON.stringify(k)}`);
  const name = requireString(body.name, 'name', { min: 1, max: LIMITS.name }).trim();
  if (name === '') throw invalid('name', 'name is required');
  const description = optionalString(body.description, 'description', LIMITS.description);
  if (!Array.isArray(body.capabilities))
    throw invalid('capabilities', 'capabilities must be an array such as ["read:customer_profile"]');
  const capabilities = body.capabilities.map((c, i) =>
    requireString(c, `capabilities[${i}]`, { min: 1, max: 512 }),
  );
  const constraints = normalizeConstraints(body.constraints);
  const conditions = normalizeRules(body.conditions, 'conditions');
  const approval_rules = normalizeRules(body.approval_rules, 'approval_rules');
  const input = { name, description, capabilities, constraints, conditions, approval_rules };
  validatePolicyInput(input);
  return input;
}

function normalizeConstraints(v: unknown): PolicyConstraints {
  if (v === undefined || v === null) return PolicyConstraints.fromPartial({});
  if (typeof v !== 'object' || Array.isArray(v))
    throw invalid('constraints', 'constraints must be an object');
  const c = v as Json;
  const known = new Set(['max_actions_per_day', 'allowed_hours', 'rate_limit', 'timezone']);
  for (const k of Object.keys(c))
    if (!known.has(k))
      throw invalid(
        `constraints.${k}`,
        `unknown constraint ${JSON.stringify(k)} (known: ${[...known].join(', ')})`,
      );
  const max = c.max_actions_per_day;
  if (
    max !== undefined &&
    max !== null &&
    (typeof max !== 'number' || !Number.isInteger(max) || max < 0 || max > 1e9)
  ) {
    throw invalid(
      'constraints.max_actions_per_day',
      'max_actions_per_day must be an integer from 0 (unlimited) to 1000000000',
    );
  }
  return PolicyConstraints.fromPartial({
    max_actions_per_day: (max as number | undefined) ?? 0,
    allowed_hours: optionalString(c.allowed_hours, 'constraints.allowed_hours', 200),
    rate_limit: optionalString(c.rate_limit, 'constraints.rate_limit', 100),
    timezone: optionalString(c.timezone, 'constraints.timezone', 100),
  });
}

function normalizeRules(v: unknown, field: string): Rule[] {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v))
    throw invalid(
      field,
      `${field} must be an array of CEL expressions or {expression, actions, description} objects`,
    );
  return v.map((r, i) => {
    if (typeof r === 'string') return Rule.fromPartial({ expression: r });
    if (typeof r !== 'object' || r === null || Array.isArray(r))
      throw invalid(`${field}[${i}]`, `${field}[${i}] must be a string or an object`);
    const o = r as Json;
    for (const k of Object.keys(o))
      if (!['expression', 'actions', 'description'].includes(k))
        throw invalid(`${field}[${i}].${k}`, `unknown field ${JSON.stringify(k)}`);
    const actions = o.actions === undefined ? [] : o.actions;
    if (!Array.isArray(actions))
      throw invalid(`${field}[${i}].actions`, 'actions must be an array of capabilities');
    return Rule.fromPartial({
      expression: requireString(o.expression, `${field}[${i}].expression`, { min: 1, max: 4096 }),
      actions: actions.map((a, j) => requireString(a, `${field}[${i}].actions[${j}]`, { min: 1, max: 512 })),
      description: optionalString(o.description, `${field}[${i}].description`, 500),
    });
  });
}

function unionCapabilities(policies: Policy[]): string[] {
  const out = new Set<string>();
  for (const p of policies) for (const c of p.capabilities) out.add(c);
  return [...out];
}

function toClaims(t: TokenRecord): TokenClaims {
  const { revoked_at_ms: _r, revoke_reason: _why, ...claims } = t;
  return TokenClaims.fromPartial({ version: 1, ...claims });
}

export function tokenInfo(t: TokenRecord): TokenInfo {
  return {
    token_id: t.token_id,
    agent_id: t.agent_id,
    policy_ids: t.policy_ids,
    attenuation: t.attenuation,
    attenuated: t.attenuated,
    parent_token_id: t.parent_token_id,
    issued_at: formatTime(t.issued_at_ms),
    expires_at: formatTime(t.expires_at_ms),
    revoked: t.revoked_at_ms !== 0,
    revoked_at: t.revoked_at_ms ? formatTime(t.revoked_at_ms) : '',
    metadata: t.metadata,
    key_id: t.key_id,
  };
}

function parseAgentStatusFilter(v: unknown): AgentStatus | undefined {
  return parseEnumFilter(v, AgentStatus, 'status');
}

function parseEnumFilter<E extends Record<string, string | number>>(
  v: unknown,
  e: E,
  field: string,
): number | undefined {
  if (v === undefined || v === null || v === '' || v === 0) return undefined;
  if (typeof v === 'number' && typeof e[v] === 'string' && v > 0) return v;
  if (typeof v === 'string') {
    const n = e[v.toUpperCase() as keyof E];
    if (typeof n === 'number' && n > 0) return n;
  }
  const names = Object.keys(e).filter(
    (k) => isNaN(Number(k)) && !k.endsWith('UNSPECIFIED') && k !== 'UNRECOGNIZED',
  );
  throw invalid(field, `${field} must be one of ${names.join(', ')}`);
}

/** Newest first (ids are time-sortable), keeping rows that pass `keep`, scanning at most 20 pages. */
async function filteredPage<T>(
  r: StoreReader,
  table: 'agents' | 'policies' | 'tokens' | 'approvals',
  after: string | undefined,
  limit: number,
  keep: (v: T) => boolean,
): Promise<{ items: T[]; next: string | undefined }> {
  const items: T[] = [];
  let cursor = after;
  for (let round = 0; round < 20; round++) {
    const rows = await r.scan<T>(table, {
      limit: limit + 1,
      reverse: true,
      ...(cursor !== undefined ? { after: cursor } : {}),
    });
    for (const row of rows) {
      if (items.length === limit) return { items, next: cursor };
      cursor = row.key;
      if (keep(row.value)) items.push(row.value);
    }
    if (rows.length <= limit) return { items, next: undefined };
  }
  return { items, next: cursor };
}

async function scanAll(r: StoreReader, table: 'index', prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await r.scan(table, { prefix, limit: 1000, ...(after !== undefined ? { after } : {}) });
    for (const row of rows) keys.push(row.key);
    if (rows.length < 1000) return keys;
    after = rows[rows.length - 1]!.key;
  }
}
