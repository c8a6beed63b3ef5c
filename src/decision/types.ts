import type { DecisionKind, ReasonCode } from '../common/reasons';
import type { CompiledPolicy, RateLimit } from '../policy/types';
import type { PublicKeyLookup, TokenClaims, VerifyResult } from '../token/types';

/** One check as the engine sees it (the edge has already bounded sizes). */
export interface DecisionRequest {
  /** The presented token; anything that is not a well-formed token string is MALFORMED_TOKEN. */
  token: unknown;
  /** "verb:resource_type". */
  action: string;
  /** The resource acted on ('' when none). */
  resource: string;
  /** Request context, visible to CEL rules. */
  context: Record<string, unknown>;
  /** An approval presented to proceed after APPROVAL_REQUIRED. */
  approvalId?: string | undefined;
}

export type AgentStatus = 'ACTIVE' | 'DISABLED';

export interface AgentView {
  id: string;
  status: AgentStatus;
  metadata: Record<string, string>;
}

export type ApprovalState = 'PENDING' | 'APPROVED' | 'DENIED' | 'EXPIRED' | 'USED';

export interface ApprovalView {
  id: string;
  status: ApprovalState;
  tokenId: string;
  action: string;
  resource: string;
  /** SHA-256 of the canonical {action, resource, context} the grant is bound to ('' = bound to nothing). */
  requestHash: string;
  expiresAtMs: number;
  /** Who decided (API key name), once decided. */
  resolvedBy?: string;
  /** The approver's comment. */
  comment?: string;
}

/** The read-only state a decision needs: a replica view on the sidecar, the store on the control plane. */
export interface DecisionView {
  /** The control-plane revision this view reflects. */
  readonly revision: number;
  publicKey: PublicKeyLookup;
  isRevoked(tokenId: string): boolean;
  agent(agentId: string): AgentView | undefined;
  policy(policyId: string): CompiledPolicy | undefined;
  approval(approvalId: string): ApprovalView | undefined;
}

/** Verifies token strings (a VerificationCache in production). */
export interface TokenVerifier {
  verify(token: unknown, lookup: PublicKeyLookup): VerifyResult;
}

/** Whether a budget has room for one more action now. */
export interface BudgetCheck {
  ok: boolean;
  /** Actions left after this one (best knowledge: a leased budget counts what is still unleased). */
  remaining: number;
  /** When not ok: milliseconds until an action may succeed (0 = unknown). */
  retryAfterMs: number;
}

/**
 * Read side of the budgets, keyed `${agent_id}|${policy_id}`. A rate limit is GCRA over the
 * policy's "N per period"; a daily maximum counts allowed actions per local day. An
 * implementation may hold only a slice (a lease) of a budget shared by several enforcement points.
 */
export interface CounterReader {
  rate(key: string, rate: RateLimit, nowMs: number): BudgetCheck;
  daily(key: string, day: string, max: number, nowMs: number): BudgetCheck;
}

/** What an ALLOW consumes; the shell applies it in the same synchronous step as the decision. */
export type CounterUpdate =
  | { kind: 'rate'; key: string; atMs: number; rate: RateLimit }
  | { kind: 'daily'; key: string; day: string; max: number; expiresAtMs: number };

/** Everything besides the request: injected, so `decide()` stays pure. */
export interface DecideDeps {
  view: DecisionView;
  verifier: TokenVerifier;
  counters: CounterReader;
  /** Decision time, Unix ms. */
  nowMs: number;
  /** True when the replica is past its staleness bound (sidecar only). */
  stale?: boolean;
  /**
   * The request's binding hash (SHA-256 of canonical {action, resource, context}), computed on
   * demand: only a check presenting an approval needs it. Without it no approval matches.
   */
  requestHash?: () => string;
}

/** Machine-actionable details (snake_case: they go on the wire as they are). */
export interface DecisionDetails {
  missing_capability?: string;
  retry_after_ms?: number;
  next_allowed_at?: string;
  remaining_daily_budget?: number;
  remaining_rate?: number;
  policy_id?: string;
  rule?: string;
  /** The approval the request presented when it did not apply (links a replay to its grant). */
  presented_approval_id?: string;
}

export interface DecisionResult {
  decision: DecisionKind;
  reasonCode: ReasonCode;
  reason: string;
  details: DecisionDetails;
  /** Verified claims, when the token could be read (for audit: agent and token id). */
  claims: TokenClaims | undefined;
  /** Policies the token names that exist (for audit). */
  policyIds: string[];
  /** Counter updates to apply; non-empty only for ALLOW. */
  usage: CounterUpdate[];
  /**
   * What to ask a human: set when APPROVAL_REQUIRED and no pending approval of this request was
   * presented, and on an ALLOW through an approval (a new request if the grant cannot be used).
   */
  approvalRequest?: { policyId: string; rule: string };
  /** The pending approval presented again (APPROVAL_REQUIRED), or the grant to use (ALLOW). */
  approvalId?: string;
  /** Why a presented approval did not apply (used, expired, bound to another request...). */
  approvalNote?: string;
}
