/**
 * Delegation: a child token can only narrow its parent (fewer capabilities, no later
 * expiry) and records its lineage so revoking any ancestor revokes it.
 */
import { ActError } from '../common/errors';
import { CLAIMS_LIMITS, validateClaims } from './codec';
import { TOKEN_VERSION, type TokenClaims } from './types';

/** Longest delegation chain (number of ancestors a token may have). */
export const MAX_DELEGATION_DEPTH = 16;

/**
 * Decides whether a capability is within the parent's rights. `parentRights` is
 * undefined when the parent is not attenuated (its rights are then its policies'
 * grants). Injected so this module does not depend on the policy grammar.
 */
export type CoversFn = (parentRights: string[] | undefined, cap: string) => boolean;

/** Options for {@link attenuateClaims}. */
export interface AttenuateOptions {
  /** Id of the child token (`tok_…`). */
  tokenId: string;
  /** Id of the key that will sign the child. */
  keyId: string;
  /** Issue time; also the earliest not-before. */
  nowMs: number;
  /** The child's capabilities; each must be covered by the parent's rights. */
  capabilities: string[];
  /** Requested expiry; default (and maximum) is the parent's expiry. */
  expiresAtMs?: number;
  /** Agent receiving the child; default the parent's agent. */
  agentId?: string;
  /** Issuer metadata for the child; default none (not inherited). */
  metadata?: Record<string, string>;
  /** Capability-subset check supplied by the policy module. */
  covers: CoversFn;
}

/** The capability list a token is narrowed to, or undefined when it is not attenuated. */
export function effectiveAttenuation(claims: TokenClaims): string[] | undefined {
  return claims.attenuated ? claims.attenuation : undefined;
}

/**
 * Builds the claims of a child token narrowed from `parent`.
 * @throws ActError INVALID_ARGUMENT (field `token_id`, `expires_at`, `capabilities` or
 *   `capabilities[i]`) when the child would be deeper, longer-lived or wider than allowed.
 */
export function attenuateClaims(parent: TokenClaims, opts: AttenuateOptions): TokenClaims {
  const ancestors = [...parent.ancestor_token_ids, parent.token_id];
  if (ancestors.length > MAX_DELEGATION_DEPTH) {
    throw new ActError('INVALID_ARGUMENT', `delegation deeper than ${MAX_DELEGATION_DEPTH}`, {
      field: 'token_id',
    });
  }
  const requested = opts.expiresAtMs ?? parent.expires_at_ms;
  if (requested > parent.expires_at_ms) {
    throw new ActError('INVALID_ARGUMENT', 'child cannot outlive its parent', { field: 'expires_at' });
  }
  if (requested <= opts.nowMs) {
    throw new ActError('INVALID_ARGUMENT', 'expiry is not in the future', { field: 'expires_at' });
  }
  if (opts.capabilities.length > CLAIMS_LIMITS.maxAttenuation) {
    throw new ActError('INVALID_ARGUMENT', 'too many capabilities', { field: 'capabilities' });
  }
  const parentRights = effectiveAttenuation(parent);
  opts.capabilities.forEach((cap, i) => {
    if (!opts.covers(parentRights, cap)) {
      throw new ActError('INVALID_ARGUMENT', `capability ${JSON.stringify(cap)} exceeds the parent token`, {
        field: `capabilities[${i}]`,
      });
    }
  });
  const child: TokenClaims = {
    version: TOKEN_VERSION,
    key_id: opts.keyId,
    token_id: opts.tokenId,
    agent_id: opts.agentId ?? parent.agent_id,
    policy_ids: [...parent.policy_ids],
    attenuation: [...opts.capabilities],
    attenuated: true,
    parent_token_id: parent.token_id,
    ancestor_token_ids: ancestors,
    issued_at_ms: opts.nowMs,
    // A child is never valid before its parent.
    not_before_ms: Math.max(parent.not_before_ms, opts.nowMs),
    expires_at_ms: Math.min(requested, parent.expires_at_ms),
    metadata: { ...(opts.metadata ?? {}) },
  };
  const problem = validateClaims(child);
  if (problem !== undefined) throw new ActError('INVALID_ARGUMENT', `invalid child token: ${problem}`);
  return child;
}
