/**
 * Waiting on an approval instead of polling: the current state first, then each change, until
 * the request is decided (APPROVED, DENIED), expires, is used, or the wait's deadline passes.
 * The same for every enforcement point: the sidecar watches its replica (sync keeps it
 * current), the control plane its memory view (the change feed keeps it current).
 */
import { ActError } from '../common/errors';
import type { Clock } from '../common/clock';
import type { ApprovalView, DecisionView, TokenVerifier } from '../decision/types';
import { ApprovalStatus, type ApprovalUpdate } from '../gen/act/v1/decision';

export const WAIT_LIMITS = { defaultMs: 60_000, maxMs: 900_000 };
/** While nothing changes, the current state is sent again this often (keeps proxies from timing out). */
const REPEAT_MS = 20_000;
/** An approval id this point has never seen is waited for this long (it may still be syncing). */
const UNKNOWN_GRACE_MS = 5_000;

export interface ApprovalWatch {
  /** The approval as this point sees it now. */
  view: Pick<DecisionView, 'approval' | 'publicKey'>;
  /** Calls `fn` after every change of approvals this point learns of; returns an unsubscribe. */
  subscribe(fn: () => void): () => void;
  verifier: TokenVerifier;
  clock: Clock;
}

export interface WaitRequest {
  approvalId: string;
  /** The ACT token whose check asked; undefined when the caller is an approver (control plane only). */
  token: string | undefined;
  timeoutMs: number;
  /** Aborted when the caller goes away. */
  signal?: AbortSignal;
}

/** Validates the wait bound: 0 → the default, at most the maximum. */
export function waitTimeout(ms: number | undefined): number {
  if (ms === undefined || ms === 0) return WAIT_LIMITS.defaultMs;
  if (!Number.isInteger(ms) || ms < 0 || ms > WAIT_LIMITS.maxMs)
    throw new ActError('INVALID_ARGUMENT', `timeout must be 1-${WAIT_LIMITS.maxMs} ms`, {
      field: 'timeout_ms',
    });
  return ms;
}

const FINAL: ReadonlySet<string> = new Set(['APPROVED', 'DENIED', 'EXPIRED', 'USED']);

function update(id: string, a: ApprovalView | undefined, nowMs: number, timedOut: boolean): ApprovalUpdate {
  if (a === undefined) {
    return {
      approval_id: id,
      status: ApprovalStatus.APPROVAL_STATUS_UNSPECIFIED,
      decided: false,
      resolved_by: '',
      comment: '',
      expires_at: '',
      reason: timedOut ? `approval ${id} is unknown here` : `approval ${id} is not known here yet`,
    };
  }
  // A grant past its deadline is as unusable as a request past it (the check will say so), even
  // before the owner's sweep has written EXPIRED.
  const open = a.status === 'PENDING' || a.status === 'APPROVED';
  const status = open && a.expiresAtMs <= nowMs ? 'EXPIRED' : a.status;
  const decided = FINAL.has(status);
  const by = a.resolvedBy ? ` by ${a.resolvedBy}` : '';
  const reason =
    status === 'APPROVED'
      ? `approved${by}: repeat exactly the same check with approval_id ${id} (allowed once)`
      : status === 'DENIED'
        ? `denied${by}`
        : status === 'EXPIRED'
          ? `expired at ${new Date(a.expiresAtMs).toISOString()} without being used`
          : status === 'USED'
            ? 'approved and already used'
            : timedOut
              ? 'still waiting for a human; the wait ended (wait again, or check later)'
              : 'waiting for a human';
  return {
    approval_id: id,
    status: ApprovalStatus[status],
    decided,
    resolved_by: a.resolvedBy ?? '',
    comment: a.comment ?? '',
    expires_at: new Date(a.expiresAtMs).toISOString(),
    reason,
  };
}

/**
 * The stream of states. Throws PERMISSION_DENIED before the first state when the token does
 * not verify or is not the approval's.
 */
export async function* waitForApproval(w: ApprovalWatch, req: WaitRequest): AsyncGenerator<ApprovalUpdate> {
  let tokenId: string | undefined;
  if (req.token !== undefined) {
    const v = w.verifier.verify(req.token, w.view.publicKey);
    if (!v.ok) throw new ActError('PERMISSION_DENIED', `the token does not verify: ${v.reason}`);
    tokenId = v.claims.token_id;
  }
  const deadline = w.clock() + req.timeoutMs;
  let wake: (() => void) | undefined;
  const off = w.subscribe(() => wake?.());
  try {
    let last = '';
    let lastSent = 0;
    for (;;) {
      const now = w.clock();
      const a = w.view.approval(req.approvalId);
      if (a !== undefined && tokenId !== undefined && a.tokenId !== tokenId)
        throw new ActError('PERMISSION_DENIED', `approval ${req.approvalId} was not asked for by this token`);
      const timedOut =
        now >= deadline ||
        (a === undefined && now >= Math.min(deadline, deadline - req.timeoutMs + UNKNOWN_GRACE_MS));
      if (a === undefined && timedOut)
        throw new ActError('NOT_FOUND', `approval ${req.approvalId} is unknown here`, {
          field: 'approval_id',
        });
      const u = update(req.approvalId, a, now, timedOut);
      const key = `${u.status}|${u.decided}`;
      if (key !== last || timedOut || now - lastSent >= REPEAT_MS) {
        yield u;
        last = key;
        lastSent = now;
      }
      if (u.decided || timedOut || req.signal?.aborted) return;
      const until = Math.min(
        deadline,
        a === undefined ? now + 200 : now + REPEAT_MS,
        a ? a.expiresAtMs + 1 : Infinity,
      );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, until - now));
        wake = () => {
          clearTimeout(t);
          resolve();
        };
        req.signal?.addEventListener('abort', () => wake?.(), { once: true });
      });
      wake = undefined;
    }
  } finally {
    off();
  }
}

/**
 * The REST long-poll's answer (`GET /api/approvals/{id}/wait`, sidecar and control plane alike):
 * the wait run to its end, its last state as JSON. NOT_FOUND for an approval never seen.
 */
export async function waitAnswer(w: ApprovalWatch, req: WaitRequest): Promise<Record<string, unknown>> {
  let last: ApprovalUpdate | undefined;
  for await (const u of waitForApproval(w, req)) last = u;
  if (!last) throw new ActError('UNAVAILABLE', 'the wait ended without an answer');
  if (last.status === ApprovalStatus.APPROVAL_STATUS_UNSPECIFIED)
    throw new ActError('NOT_FOUND', last.reason, { field: 'approval_id' });
  return {
    approval_id: last.approval_id,
    status: ApprovalStatus[last.status],
    decided: last.decided,
    reason: last.reason,
    expires_at: last.expires_at,
    ...(last.resolved_by ? { resolved_by: last.resolved_by } : {}),
    ...(last.comment ? { comment: last.comment } : {}),
  };
}
