/**
 * Tokens: issue, attenuate (a narrower child, optionally for another agent), read, list and
 * revoke (cascading to every derived token, in one transaction). The store never holds a token
 * string; the answer to issue/attenuate is the only time it is shown.
 */
import type { Clock } from '../../common/clock';
import { ActError, invalid, notFound } from '../../common/errors';
import { newSortableId } from '../../common/ids';
import { Agent, AgentStatus, Policy, type IssueTokenResponse, type TokenInfo } from '../../gen/act/v1/admin';
import { Revocation, TokenIssued } from '../../gen/act/v1/sync';
import { TokenClaims } from '../../gen/act/v1/token';
import { capabilityCovers, parseCapability } from '../../policy';
import type { Capability } from '../../policy/types';
import { idx, type SigningKeyRecord, type TokenRecord } from '../../store/records';
import type { Store, StoreWriter } from '../../store/types';
import { attenuateClaims, signToken } from '../../token';
import type { SigningKeys } from '../signing-keys';
import { filteredPage, scanAll, type Page } from '../paging';
import {
  LIMITS,
  formatTime,
  optionalBool,
  optionalString,
  parseTime,
  rejectUnknown,
  requireId,
  requireString,
  validateMetadata,
} from '../validate';

type Json = Record<string, unknown>;

export interface TokenConfig {
  /** Longest token lifetime accepted at issue (default 365 days). */
  maxTokenLifetimeMs: number;
  /** Token lifetime when expires_at is omitted (default 24 hours). */
  defaultTokenLifetimeMs: number;
}

export interface IssueTokenInput {
  agentId: string;
  policyIds: string[];
  expiresAt: unknown;
  notBefore: unknown;
  metadata: Record<string, string>;
}

export interface AttenuateInput {
  parentId: string;
  capabilities: string[];
  expiresAt: unknown;
  agentId: string | undefined;
  metadata: Record<string, string>;
}

export interface ListTokensInput {
  limit?: unknown;
  cursor?: unknown;
  agentId: string | undefined;
  includeInactive: boolean;
}

export function parseIssueToken(body: Json): IssueTokenInput {
  rejectUnknown(body, ['agent_id', 'policy_ids', 'expires_at', 'metadata', 'not_before']);
  const agentId = requireId(body.agent_id, 'agent', 'agent_id');
  if (!Array.isArray(body.policy_ids) || body.policy_ids.length === 0)
    throw invalid('policy_ids', 'policy_ids must be a non-empty array of policy ids');
  if (body.policy_ids.length > LIMITS.policyIdsPerToken)
    throw invalid('policy_ids', `a token may name at most ${LIMITS.policyIdsPerToken} policies`);
  const policyIds = body.policy_ids.map((p, i) => requireId(p, 'policy', `policy_ids[${i}]`));
  if (new Set(policyIds).size !== policyIds.length) throw invalid('policy_ids', 'policy_ids has duplicates');
  return {
    agentId,
    policyIds,
    expiresAt: body.expires_at,
    notBefore: body.not_before,
    metadata: validateMetadata(body.metadata, 'metadata', 32),
  };
}

export function parseAttenuate(id: unknown, body: Json): AttenuateInput {
  rejectUnknown(body, ['token_id', 'capabilities', 'expires_at', 'agent_id', 'metadata']);
  const parentId = requireId(id, 'tok', 'token_id');
  if (!Array.isArray(body.capabilities))
    throw invalid('capabilities', 'capabilities must be an array of capabilities');
  const capabilities = body.capabilities.map((c, i) => {
    const s = requireString(c, `capabilities[${i}]`, { min: 1, max: 512 });
    parseCapability(s, `capabilities[${i}]`);
    return s;
  });
  return {
    parentId,
    capabilities,
    expiresAt: body.expires_at,
    agentId:
      body.agent_id === undefined || body.agent_id === ''
        ? undefined
        : requireId(body.agent_id, 'agent', 'agent_id'),
    metadata: validateMetadata(body.metadata, 'metadata', 32),
  };
}

export function parseListTokens(q: Json): ListTokensInput {
  return {
    limit: q.limit,
    cursor: q.cursor,
    agentId:
      q.agent_id === undefined || q.agent_id === '' ? undefined : requireId(q.agent_id, 'agent', 'agent_id'),
    includeInactive: optionalBool(q.include_inactive, 'include_inactive'),
  };
}

export class TokenService {
  constructor(
    private readonly store: Store,
    private readonly keys: SigningKeys,
    private readonly clock: Clock,
    private readonly config: TokenConfig,
  ) {}

  async issue(i: IssueTokenInput): Promise<IssueTokenResponse> {
    const now = this.clock();
    const expiresAt = this.expiry(i.expiresAt, now, Infinity);
    const notBefore =
      i.notBefore === undefined || i.notBefore === '' ? now : parseTime(i.notBefore, 'not_before');
    if (notBefore >= expiresAt) throw invalid('not_before', 'not_before must be before expires_at');
    const { result } = await this.store.write(async (w) => {
      const key = await this.keys.active(w);
      const agent = await w.get<Agent>('agents', i.agentId);
      if (!agent) throw notFound('agent', i.agentId, 'agent_id');
      if (agent.status !== AgentStatus.ACTIVE) {
        throw new ActError(
          'FAILED_PRECONDITION',
          `agent ${i.agentId} is disabled; enable it before issuing tokens`,
          { field: 'agent_id' },
        );
      }
      const policies: Policy[] = [];
      for (const [n, id] of i.policyIds.entries()) {
        const p = await w.get<Policy>('policies', id);
        if (!p) throw notFound('policy', id, `policy_ids[${n}]`);
        policies.push(p);
      }
      const claims = TokenClaims.fromPartial({
        version: 1,
        key_id: key.keyId,
        token_id: newSortableId('tok', now),
        agent_id: i.agentId,
        policy_ids: i.policyIds,
        issued_at_ms: now,
        not_before_ms: notBefore,
        expires_at_ms: expiresAt,
        metadata: i.metadata,
      });
      const token = signToken(claims, key);
      await recordToken(w, claims);
      return { token, claims, capabilities: unionCapabilities(policies) };
    });
    return {
      token: result.token,
      token_id: result.claims.token_id,
      agent_id: i.agentId,
      expires_at: formatTime(expiresAt),
      capabilities: result.capabilities,
      policy_ids: i.policyIds,
      parent_token_id: '',
    };
  }

  async attenuate(i: AttenuateInput): Promise<IssueTokenResponse> {
    const now = this.clock();
    const { result } = await this.store.write(async (w) => {
      const key = await this.keys.active(w);
      const parent = await w.get<TokenRecord>('tokens', i.parentId);
      if (!parent) throw notFound('token', i.parentId, 'token_id');
      if (parent.revoked_at_ms !== 0)
        throw new ActError('FAILED_PRECONDITION', `token ${i.parentId} is revoked`, { field: 'token_id' });
      if (parent.expires_at_ms <= now)
        throw new ActError('FAILED_PRECONDITION', `token ${i.parentId} has expired`, { field: 'token_id' });
      const expiresAt =
        i.expiresAt === undefined || i.expiresAt === ''
          ? parent.expires_at_ms
          : this.expiry(i.expiresAt, now, parent.expires_at_ms);
      const agentId = i.agentId ?? parent.agent_id;
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
        capabilities: i.capabilities,
        expiresAtMs: expiresAt,
        agentId,
        metadata: i.metadata,
        covers,
      });
      const token = signToken(claims, key);
      await recordToken(w, claims);
      return { token, claims };
    });
    return {
      token: result.token,
      token_id: result.claims.token_id,
      agent_id: result.claims.agent_id,
      expires_at: formatTime(result.claims.expires_at_ms),
      capabilities: result.claims.attenuation,
      policy_ids: result.claims.policy_ids,
      parent_token_id: i.parentId,
    };
  }

  async get(id: unknown): Promise<TokenInfo> {
    const tokenId = requireId(id, 'tok', 'token_id');
    const rec = await this.store.read((r) => r.get<TokenRecord>('tokens', tokenId));
    if (!rec) throw notFound('token', tokenId, 'token_id');
    return tokenInfo(rec);
  }

  async list(i: ListTokensInput): Promise<Page<TokenInfo>> {
    const now = this.clock();
    const page = await this.store.read((r) =>
      filteredPage<TokenRecord>(
        r,
        'tokens',
        i,
        (t) =>
          (i.agentId === undefined || t.agent_id === i.agentId) &&
          (i.includeInactive || (t.revoked_at_ms === 0 && t.expires_at_ms > now)),
      ),
    );
    return { items: page.items.map(tokenInfo), next_cursor: page.next_cursor };
  }

  /** Revokes a token and every token derived from it, in one transaction. */
  async revoke(
    id: unknown,
    reason: unknown,
  ): Promise<{ revoked_token_ids: string[]; revision: number; agent_id: string }> {
    const tokenId = requireId(id, 'tok', 'token_id');
    const why = optionalString(reason, 'reason', 500);
    const { result, revision } = await this.store.write(async (w) => {
      const rec = await w.get<TokenRecord>('tokens', tokenId);
      if (!rec) throw notFound('token', tokenId, 'token_id');
      return { ids: await this.revokeTree(w, tokenId, why), agent: rec.agent_id };
    });
    return { revoked_token_ids: result.ids, revision, agent_id: result.agent };
  }

  /** Revokes `rootId` and its descendants inside `w`; returns their ids. */
  async revokeTree(w: StoreWriter, rootId: string, reason: string): Promise<string[]> {
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
}

async function recordToken(w: StoreWriter, c: TokenClaims): Promise<void> {
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
