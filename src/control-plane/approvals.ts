/**
 * Approvals, end to end, in one place: the only code that changes approval state.
 *
 * Lifecycle: a check hits an approval rule → `request()` stores a PENDING approval bound to the
 * exact request (token, action, resource, and the SHA-256 of canonical {action, resource,
 * context}) → a human `resolve()`s it (APPROVED or DENIED, final) → the agent repeats exactly that
 * check presenting the approval id → the enforcement point `consume()`s the grant (APPROVED →
 * USED, atomically in one store transaction: across every sidecar and replica only one check
 * can win) and answers ALLOW. A PENDING or APPROVED approval past its deadline becomes EXPIRED
 * (final). Every step is a store write with a change event, so sidecars, other replicas and
 * waiters see it; approvers are notified through the outbox (notifier.ts).
 */
import { ActError, invalid, notFound } from '../common/errors';
import type { Clock } from '../common/clock';
import { newSortableId } from '../common/ids';
import { requestHash } from '../common/request-hash';
import { Approval } from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import type { Store, StoreWriter } from '../store/types';
import type { ApprovalRequestInput, ConsumeInput, ConsumeResult } from '../enforce/ports';
import { LIMITS, formatTime, optionalString, requireId } from './validate';
import { filteredPage, parseEnumFilter, type Page } from './paging';

export interface ApprovalConfig {
  /** How long a request stays open, and a grant usable (default 24 h). */
  ttlMs: number;
}

/** What happened to an approval, for notifications. */
export type ApprovalEvent =
  'approval.requested' | 'approval.approved' | 'approval.denied' | 'approval.expired';

export interface ApprovalListener {
  (event: ApprovalEvent, a: Approval): void;
}

/** Clock difference tolerated between an enforcement point's `notAfterMs` and this process. */
const CLOCK_ALLOWANCE_MS = 500;

/** Index of open approvals by deadline: `approval-open:<13-digit ms>:<id>`. */
const OPEN_PREFIX = 'approval-open:';
const openKey = (a: Approval) =>
  `${OPEN_PREFIX}${String(Date.parse(a.expires_at)).padStart(13, '0')}:${a.approval_id}`;

export function isFinal(s: ApprovalStatus): boolean {
  return s === ApprovalStatus.DENIED || s === ApprovalStatus.EXPIRED || s === ApprovalStatus.USED;
}

export class ApprovalService {
  private readonly listeners = new Set<ApprovalListener>();

  constructor(
    private readonly store: Store,
    private readonly clock: Clock,
    private readonly config: ApprovalConfig,
  ) {}

  /** Notified after each committed step (the notifier's outbox). */
  onEvent(l: ApprovalListener): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  /** Records a pending approval for a check that hit an approval rule. */
  async request(input: ApprovalRequestInput): Promise<Approval> {
    const now = this.clock();
    const approval = Approval.fromPartial({
      approval_id: newSortableId('approval', now),
      status: ApprovalStatus.PENDING,
      agent_id: input.agentId,
      token_id: input.tokenId,
      action: input.action,
      resource: input.resource,
      context: input.context,
      policy_id: input.policyId,
      rule: input.rule,
      created_at: formatTime(now),
      expires_at: formatTime(now + this.config.ttlMs),
      audit_id: input.auditId,
      request_hash: requestHash(input.action, input.resource, input.context),
      source: input.source,
    });
    await this.store.write(async (w) => {
      const agent = await w.get<{ name?: string }>('agents', input.agentId);
      approval.agent_name = agent?.name ?? '';
      this.put(w, approval);
    });
    this.emit('approval.requested', approval);
    return approval;
  }

  /** Uses a grant for exactly the request it is bound to: APPROVED → USED, once. */
  async consume(input: ConsumeInput): Promise<ConsumeResult> {
    const now = this.clock();
    const { result } = await this.store.write(async (w): Promise<ConsumeResult & { expired?: Approval }> => {
      // The asker gave up (and answered APPROVAL_UNAVAILABLE): leave the grant for its next try.
      if (input.notAfterMs && this.clock() > input.notAfterMs + CLOCK_ALLOWANCE_MS)
        return {
          consumed: false,
          reason: 'was asked for too late (the enforcement point had stopped waiting)',
        };
      const a = await w.get<Approval>('approvals', input.approvalId);
      if (!a) return { consumed: false, reason: 'is unknown' };
      if (
        a.token_id !== input.tokenId ||
        a.agent_id !== input.agentId ||
        a.action !== input.action ||
        a.resource !== input.resource ||
        a.request_hash !== input.requestHash
      )
        return { consumed: false, reason: 'was granted for a different request' };
      if (a.status === ApprovalStatus.USED) return { consumed: false, reason: 'was already used' };
      if (a.status !== ApprovalStatus.APPROVED)
        return { consumed: false, reason: `is ${ApprovalStatus[a.status]}, not APPROVED` };
      if (Date.parse(a.expires_at) <= now) {
        const expired = this.put(w, { ...a, status: ApprovalStatus.EXPIRED }, a);
        return { consumed: false, reason: `expired at ${a.expires_at}`, expired };
      }
      this.put(
        w,
        {
          ...a,
          status: ApprovalStatus.USED,
          used_at: formatTime(now),
          used_audit_id: input.auditId,
          used_by: input.source,
        },
        a,
      );
      return { consumed: true, reason: '' };
    });
    if (result.expired) this.emit('approval.expired', result.expired);
    return { consumed: result.consumed, reason: result.reason };
  }

  /** Records a human's decision on a pending approval (final). */
  async resolve(id: unknown, approve: boolean, comment: unknown, resolvedBy: string): Promise<Approval> {
    const approvalId = requireId(id, 'approval', 'approval_id');
    const note = optionalString(comment, 'comment', LIMITS.comment);
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
      if (Date.parse(a.expires_at) <= now) return this.put(w, { ...a, status: ApprovalStatus.EXPIRED }, a);
      return this.put(
        w,
        {
          ...a,
          status: approve ? ApprovalStatus.APPROVED : ApprovalStatus.DENIED,
          resolved_by: resolvedBy,
          resolved_at: formatTime(now),
          comment: note,
        },
        a,
      );
    });
    if (result.status === ApprovalStatus.EXPIRED) {
      this.emit('approval.expired', result);
      throw new ActError('FAILED_PRECONDITION', `approval ${approvalId} expired at ${result.expires_at}`, {
        field: 'approval_id',
      });
    }
    this.emit(approve ? 'approval.approved' : 'approval.denied', result);
    return result;
  }

  async get(id: unknown): Promise<Approval> {
    const approvalId = requireId(id, 'approval', 'approval_id');
    const a = await this.store.read((r) => r.get<Approval>('approvals', approvalId));
    if (!a) throw notFound('approval', approvalId, 'approval_id');
    return a;
  }

  async list(q: {
    limit?: unknown;
    cursor?: unknown;
    status?: unknown;
    agent_id?: unknown;
  }): Promise<Page<Approval>> {
    const status = parseEnumFilter(q.status, ApprovalStatus, 'status');
    const agentId =
      q.agent_id === undefined || q.agent_id === '' ? undefined : requireId(q.agent_id, 'agent', 'agent_id');
    return this.store.read((r) =>
      filteredPage<Approval>(
        r,
        'approvals',
        q,
        (a) =>
          (status === undefined || a.status === status) && (agentId === undefined || a.agent_id === agentId),
      ),
    );
  }

  /** Moves open approvals past their deadline to EXPIRED (run periodically; any replica may). */
  async expireDue(): Promise<number> {
    const now = this.clock();
    const end = `${OPEN_PREFIX}${String(now).padStart(13, '0')}`;
    const { result } = await this.store.write(async (w) => {
      const rows = await w.scan<string>('index', { prefix: OPEN_PREFIX, limit: 500 });
      const expired: Approval[] = [];
      for (const row of rows) {
        if (row.key >= end) break;
        const a = await w.get<Approval>('approvals', row.value);
        if (!a || isFinal(a.status)) {
          w.del('index', row.key);
          continue;
        }
        if (Date.parse(a.expires_at) > now) continue;
        expired.push(this.put(w, { ...a, status: ApprovalStatus.EXPIRED }, a));
      }
      return expired;
    });
    for (const a of result) this.emit('approval.expired', a);
    return result.length;
  }

  /** Writes an approval with its change event, keeping the open-deadline index in step. */
  private put(w: StoreWriter, next: Approval, prev?: Approval): Approval {
    const a = Approval.fromPartial(next);
    w.put('approvals', a.approval_id, a);
    if (prev && !isFinal(prev.status) && isFinal(a.status)) w.del('index', openKey(prev));
    if (!prev && !isFinal(a.status)) w.put('index', openKey(a), a.approval_id);
    w.emit({ kind: { $case: 'approval', value: a } });
    return a;
  }

  private emit(e: ApprovalEvent, a: Approval): void {
    for (const l of [...this.listeners]) {
      try {
        l(e, a);
      } catch {
        // A faulty listener must not fail a committed step.
      }
    }
  }
}

/** Rejects an approval id that is not one (before any lookup). */
export function requireApprovalId(v: unknown): string {
  if (typeof v !== 'string' || !/^approval_[0-9a-z]{6,64}$/.test(v))
    throw invalid('approval_id', 'approval_id must be an "approval_..." id');
  return v;
}
