/**
 * What the model reads when a call is not forwarded: a tool result with `isError: true` and a
 * text it can act on — the reason, what is missing, when to retry, how to get an approval — plus
 * the decision in `_meta["act.dev/decision"]` for programs. Pure.
 */
import type { ApprovalState, Verdict } from './checker';

/** `_meta` key of the decision on a result the gateway answered itself. */
export const DECISION_META = 'act.dev/decision';
/** `_meta` key of `params` naming an approval to use (from another session). */
export const APPROVAL_META = 'act.dev/approval_id';

export interface ErrorResult {
  [key: string]: unknown;
  content: { type: 'text'; text: string }[];
  isError: true;
  _meta?: Record<string, unknown>;
}

function meta(v: Verdict, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const d: Record<string, unknown> = {
    decision: v.decision,
    reason_code: v.reasonCode,
    reason: v.reason,
    audit_id: v.auditId,
    ...extra,
  };
  if (v.approvalId) d.approval_id = v.approvalId;
  const details = Object.fromEntries(
    Object.entries(v.details).filter(([, x]) => x !== undefined && x !== ''),
  );
  if (Object.keys(details).length > 0) d.details = details;
  return { [DECISION_META]: d };
}

function result(text: string, m: Record<string, unknown>): ErrorResult {
  return { content: [{ type: 'text', text }], isError: true, _meta: m };
}

function retryHint(v: Verdict): string {
  const ms = v.details.retry_after_ms;
  const at = v.details.next_allowed_at;
  if (!ms && !at) return '';
  const when = ms ? `in ${ms < 10_000 ? `${ms} ms` : `${Math.ceil(ms / 1000)} s`}` : '';
  return ` Retry ${[when, at ? `at ${at}` : ''].filter(Boolean).join(', ')}.`;
}

/** A DENY: the reason and what would change it. */
export function denied(what: string, action: string, resource: string, v: Verdict): ErrorResult {
  const on = resource ? ` on ${JSON.stringify(resource)}` : '';
  let text = `ACT denied ${what} (${action}${on}): ${v.reason} [${v.reasonCode}].`;
  if (v.details.missing_capability)
    text += ` Missing capability: ${v.details.missing_capability} — ask an operator to grant it; retrying will not help.`;
  text += retryHint(v);
  text += ` The call was not sent. Audit id: ${v.auditId}.`;
  return result(text, meta(v));
}

/** APPROVAL_REQUIRED answered at once (or a held call whose wait ended undecided). */
export function approvalNeeded(what: string, v: Verdict, state?: ApprovalState): ErrorResult {
  const id = v.approvalId;
  const where = state ? ` ${state.reason}.` : '';
  const text =
    `${what} needs a human's approval: ${v.reason}. Approval ${id} is ${state?.status === 'EXPIRED' ? 'expired' : 'pending'}.${where} ` +
    `Ask a person to approve ${id}; then make exactly the same call again, with the same arguments ` +
    `(the approval is bound to them and is used once; this session remembers it, another session passes ` +
    `_meta {"${APPROVAL_META}": "${id}"}). The call was not sent. Audit id: ${v.auditId}.`;
  return result(text, meta(v, state ? { approval_status: state.status } : {}));
}

/** No decision could be made (the enforcement point failed closed). */
export function undecided(what: string, why: string): ErrorResult {
  return result(`ACT could not decide ${what}, so it was not sent: ${why}. Try again shortly.`, {
    [DECISION_META]: { decision: 'DENY', reason_code: 'UNAVAILABLE', reason: why },
  });
}
