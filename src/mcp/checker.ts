/**
 * The port between MCP and ACT: one session's token, asked "may I?" per call. The gateway wires
 * it to the sidecar's Enforcer (src/enforce); the stdio wrapper to the sidecar over gRPC
 * (@act-platform/sdk). The MCP side (front.ts) never sees which.
 */
import type { CheckParts } from './mapping';

export type VerdictKind = 'ALLOW' | 'DENY' | 'APPROVAL_REQUIRED';

/** A decision as the MCP side needs it. */
export interface Verdict {
  decision: VerdictKind;
  reasonCode: string;
  reason: string;
  auditId: string;
  /** The approval to wait for (APPROVAL_REQUIRED), or the grant used (an ALLOW through one); else "". */
  approvalId: string;
  details: {
    missing_capability?: string | undefined;
    retry_after_ms?: number | undefined;
    next_allowed_at?: string | undefined;
    remaining_daily_budget?: number | undefined;
    remaining_rate?: number | undefined;
    policy_id?: string | undefined;
    rule?: string | undefined;
  };
  /** The checker's own record of the decision (the gateway keeps its CheckOutcome here). */
  raw?: unknown;
}

/** Where an approval stands after a wait. */
export interface ApprovalState {
  status: 'PENDING' | 'APPROVED' | 'DENIED' | 'EXPIRED' | 'USED' | 'UNKNOWN';
  /** A sentence saying what happened. */
  reason: string;
}

/** What happened upstream after an ALLOW. */
export interface CallOutcome {
  /** ok: a result; tool_error: a result with isError; the rest: no result. */
  outcome: 'ok' | 'tool_error' | 'upstream_error' | 'timeout' | 'cancelled' | 'result_too_large';
  latencyMs: number;
  /** Short error text (no arguments). */
  error?: string;
  resultBytes?: number;
  /** What was called: tools/call, resources/read, prompts/get. */
  method: string;
  /** The tool, URI or prompt (un-namespaced). */
  target: string;
  server: string;
}

export interface CallChecker {
  /**
   * Checks one call with the session's token. A deny is a verdict; throws only when no decision
   * could be made (the caller answers with an error and never forwards).
   */
  check(parts: CheckParts, approvalId: string): Promise<Verdict>;
  /** Waits up to `timeoutMs` for a human to decide; resolves with the last known state. */
  waitForApproval(approvalId: string, timeoutMs: number, signal: AbortSignal): Promise<ApprovalState>;
  /** Whether any capability of the token could ever allow `action` (what tools/list shows). */
  visible(): { mayEverAllow(action: string): boolean };
  /** Records what happened upstream after `verdict` allowed the call (best effort; never throws). */
  recordOutcome(parts: CheckParts, verdict: Verdict, outcome: CallOutcome): Promise<void>;
}
