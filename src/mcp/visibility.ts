/**
 * Least privilege the model can see: whether any capability of a token's current policies —
 * narrowed by the token's attenuation — can match an action at all. Resource patterns,
 * conditions, hours, budgets and approvals are decided per call; this only hides what no call
 * could ever be allowed. A token that does not verify, has expired, is revoked (or an ancestor
 * is), or whose agent is unknown or disabled sees nothing.
 */
import type { DecisionView, TokenVerifier } from '../decision/types';
import { capabilityMatches, parseAction, parseCapability, type Capability } from '../policy';
import type { TokenClaims } from '../token/types';

// Each capability's verb:type part alone, made once per capability object.
const withoutPattern = new WeakMap<Capability, Capability>();
const attenuations = new WeakMap<TokenClaims, Capability[]>();

function typeOnly(cap: Capability): Capability {
  if (cap.pattern === undefined) return cap;
  let c = withoutPattern.get(cap);
  if (c === undefined) {
    c = { raw: `${cap.verb}:${cap.type}`, verb: cap.verb, type: cap.type, pattern: undefined };
    withoutPattern.set(cap, c);
  }
  return c;
}

function attenuationOf(claims: TokenClaims): Capability[] {
  let caps = attenuations.get(claims);
  if (caps === undefined) {
    caps = [];
    for (const s of claims.attenuation) {
      try {
        caps.push(parseCapability(s));
      } catch {
        // an unparsable entry grants nothing (as in decide())
      }
    }
    attenuations.set(claims, caps);
  }
  return caps;
}

/** A token's view of which actions it could ever be allowed; built once per listing. */
export interface Visibility {
  /** False for every action when the token cannot be used at all. */
  mayEverAllow(action: string): boolean;
}

const NOTHING: Visibility = { mayEverAllow: () => false };

/** The visibility of `token` on `view` at `nowMs`. */
export function visibility(
  view: DecisionView,
  verifier: TokenVerifier,
  token: string,
  nowMs: number,
): Visibility {
  if (view.revision === 0) return NOTHING;
  const v = verifier.verify(token, view.publicKey);
  if (!v.ok) return NOTHING;
  const claims = v.claims;
  if (claims.expires_at_ms <= nowMs) return NOTHING;
  if (view.isRevoked(claims.token_id) || claims.ancestor_token_ids.some((id) => view.isRevoked(id)))
    return NOTHING;
  const agent = view.agent(claims.agent_id);
  if (agent === undefined || agent.status !== 'ACTIVE') return NOTHING;
  const caps: Capability[] = [];
  for (const id of claims.policy_ids) {
    const p = view.policy(id);
    if (p !== undefined) for (const c of p.capabilities) caps.push(typeOnly(c));
  }
  if (caps.length === 0) return NOTHING;
  const narrowed = claims.attenuated ? attenuationOf(claims).map(typeOnly) : undefined;
  return {
    mayEverAllow(action: string): boolean {
      const a = parseAction(action);
      if (a === undefined) return false;
      if (narrowed !== undefined && !narrowed.some((c) => capabilityMatches(c, a, ''))) return false;
      return caps.some((c) => capabilityMatches(c, a, ''));
    },
  };
}
