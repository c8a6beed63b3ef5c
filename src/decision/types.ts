import type { DecisionKind, ReasonCode } from '../common/reasons';
import type { CompiledPolicy } from '../policy/types';
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
  expiresAtMs: number;
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

/**
 * Read side of the usage counters. Rate limits use GCRA: the stored value is the
 * theoretical arrival time (ms) of the next action; daily maxima count allowed
 * actions per local day.
 */
export interface CounterReader {
  rateTat(key: string): number;
  dailyCount(key: string, day: string): number;
}

/** What an ALLOW consumes; the shell applies it (and persists it on the sidecar). */
export type CounterUpdate =
  | { kind: 'rate'; key: string; tat: number; periodMs: number }
  | { kind: 'daily'; key: string; day: string; expiresAtMs: number };

/** Everything besides the request: injected, so `decide()` stays pure. */
export interface DecideDeps {
  view: DecisionView;
  verifier: TokenVerifier;
  counters: CounterReader;
  /** Decision time, Unix ms. */
  nowMs: number;
  /** True when the replica is past its staleness bound (sidecar only). */
  stale?: boolean;
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
  /** When APPROVAL_REQUIRED and no pending approval was presented: what to ask a human. */
  approvalRequest?: { policyId: string; rule: string };
  /** The pending approval presented again (APPROVAL_REQUIRED), or the approval consumed (ALLOW). */
  approvalId?: string;
}
