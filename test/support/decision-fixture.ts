/**
 * Builds an in-memory decision world from a test/cases/*.json file: signing keys,
 * compiled policies, agents, signed tokens, revocations and approvals.
 * Used by the in-process case runner and by bench/decide.bench.ts.
 */
import type { KeyObject } from 'node:crypto';
import { requestHash } from '../../src/common/request-hash';
import { Policy } from '../../src/gen/act/v1/admin';
import { TokenClaims } from '../../src/gen/act/v1/token';
import { compilePolicy } from '../../src/policy';
import type { CompiledPolicy } from '../../src/policy/types';
import { generateSigningKey, signToken } from '../../src/token';
import type { AgentView, ApprovalView, DecisionView } from '../../src/decision/types';

export interface CaseFile {
  note: string;
  now: string;
  agents: { id: string; status?: 'ACTIVE' | 'DISABLED'; metadata?: Record<string, string> }[];
  policies: Record<string, unknown>[];
  tokens: Record<string, TokenSpec>;
  approvals?: {
    id: string;
    status: ApprovalView['status'];
    token: string;
    action: string;
    resource: string;
    /** The context the approval was granted for (default {}); the check must present the same. */
    context?: Record<string, unknown>;
    expires_at: string;
  }[];
  cases: CaseSpec[];
}

export interface TokenSpec {
  agent_id?: string;
  policy_ids?: string[];
  parent?: string;
  attenuation?: string[];
  expires_at?: string;
  not_before?: string;
  key?: 'unregistered';
  tamper?: boolean;
  revoked?: boolean;
}

export interface CaseSpec {
  note: string;
  at?: string;
  token?: string;
  token_literal?: string;
  action: string;
  resource?: string;
  context?: Record<string, unknown>;
  approval_id?: string;
  stale?: boolean;
  repeat?: number;
  expect: {
    decision?: string;
    reason_code?: string;
    reason?: string;
    details?: Record<string, unknown>;
    approval_id?: string;
    approval_request?: boolean;
  };
}

export interface World {
  view: DecisionView;
  tokens: Map<string, string>;
  claims: Map<string, TokenClaims>;
}

export function buildWorld(file: CaseFile): World {
  const now = Date.parse(file.now);
  const key = generateSigningKey(now - 86_400_000);
  const stranger = generateSigningKey(now - 86_400_000);
  const keys = new Map<string, KeyObject>([[key.keyId, key.publicKey]]);

  const policies = new Map<string, CompiledPolicy>();
  for (const p of file.policies) {
    const compiled = compilePolicy(Policy.fromPartial({ version: 1, ...p }));
    policies.set(compiled.id, compiled);
  }
  const agents = new Map<string, AgentView>(
    file.agents.map((a) => [a.id, { id: a.id, status: a.status ?? 'ACTIVE', metadata: a.metadata ?? {} }]),
  );

  const tokens = new Map<string, string>();
  const claimsByName = new Map<string, TokenClaims>();
  const revoked = new Set<string>();
  const specs = Object.entries(file.tokens);
  // Parents first: a child's claims derive from its parent's.
  specs.sort(([, a], [, b]) => (a.parent ? 1 : 0) - (b.parent ? 1 : 0));
  for (const [name, spec] of specs) {
    const parent = spec.parent ? claimsByName.get(spec.parent) : undefined;
    if (spec.parent && !parent) throw new Error(`token ${name}: unknown parent ${spec.parent}`);
    const signer = spec.key === 'unregistered' ? stranger : key;
    const claims = TokenClaims.fromPartial({
      version: 1,
      key_id: spec.key === 'unregistered' ? stranger.keyId : key.keyId,
      token_id: `tok_${name.replace(/[^a-z0-9]/g, '')}0000000000`,
      agent_id: spec.agent_id ?? parent?.agent_id ?? '',
      policy_ids: spec.policy_ids ?? parent?.policy_ids ?? [],
      attenuated: spec.attenuation !== undefined,
      attenuation: spec.attenuation ?? [],
      parent_token_id: parent?.token_id ?? '',
      ancestor_token_ids: parent ? [...parent.ancestor_token_ids, parent.token_id] : [],
      issued_at_ms: now - 7 * 86_400_000,
      not_before_ms: spec.not_before ? Date.parse(spec.not_before) : now - 7 * 86_400_000,
      expires_at_ms: spec.expires_at ? Date.parse(spec.expires_at) : now + 30 * 86_400_000,
      metadata: {},
    });
    let token = signToken(claims, signer);
    if (spec.tamper) {
      // Swap the signature for one over different claims: well-formed, wrong signature.
      const other = signToken({ ...claims, token_id: claims.token_id + 'x' }, signer);
      token = token.slice(0, token.indexOf('.')) + other.slice(other.indexOf('.'));
    }
    tokens.set(name, token);
    claimsByName.set(name, claims);
    if (spec.revoked) revoked.add(claims.token_id);
  }

  const approvals = new Map<string, ApprovalView>();
  for (const a of file.approvals ?? []) {
    const c = claimsByName.get(a.token);
    if (!c) throw new Error(`approval ${a.id}: unknown token ${a.token}`);
    approvals.set(a.id, {
      id: a.id,
      status: a.status,
      tokenId: c.token_id,
      action: a.action,
      resource: a.resource,
      requestHash: requestHash(a.action, a.resource, a.context ?? {}),
      expiresAtMs: Date.parse(a.expires_at),
    });
  }

  const view: DecisionView = {
    revision: 1,
    publicKey: (id) => keys.get(id),
    isRevoked: (id) => revoked.has(id),
    agent: (id) => agents.get(id),
    policy: (id) => policies.get(id),
    approval: (id) => approvals.get(id),
  };
  return { view, tokens, claims: claimsByName };
}
