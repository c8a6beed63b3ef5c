/**
 * Outbound approval notifications, so a chat or paging tool can route a request to a human:
 * a JSON POST to `ACT_APPROVAL_WEBHOOK_URL` when an approval is requested, approved, denied or
 * expires. Never in a check's path: events go to an outbox (the ops table `outbox`, shared by
 * replicas, so a notification survives a restart and is sent by one replica) and a sender
 * delivers them with retries and exponential backoff.
 *
 * Each POST carries `X-ACT-Event`, `X-ACT-Delivery` (an id, stable across retries),
 * `X-ACT-Timestamp` (Unix seconds) and `X-ACT-Signature: sha256=<hex HMAC-SHA256 of
 * "<timestamp>.<body>">` under `ACT_APPROVAL_WEBHOOK_SECRET`; receivers should check it and
 * reject old timestamps. A 2xx answer ends the delivery; anything else is retried up to
 * MAX_ATTEMPTS times (about a day), then dropped with an error log.
 */
import { createHmac } from 'node:crypto';
import { backoffDelay } from '../common/backoff';
import type { Clock } from '../common/clock';
import { newId } from '../common/ids';
import type { Approval } from '../gen/act/v1/admin';
import type { Logger } from '../observability/logger';
import type { OpsStore } from '../store/types';
import type { ApprovalEvent } from './approvals';
import { approvalJson } from './json-mapping';

export interface NotifierConfig {
  url: string;
  /** HMAC key; without one, deliveries are unsigned (the README says why not to). */
  secret: string | undefined;
  /** This replica (claims a delivery while sending it). */
  replicaId: string;
}

interface OutboxRow {
  delivery_id: string;
  event: ApprovalEvent;
  body: string;
  due_ms: number;
  attempts: number;
  claimed_by?: string;
  claimed_until_ms?: number;
}

const TICK_MS = 250;
const CLAIM_MS = 30_000;
const TIMEOUT_MS = 5_000;
const MAX_ATTEMPTS = 24;

export class ApprovalNotifier {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Deliveries made (tests, metrics). */
  delivered = 0;
  failedAttempts = 0;

  constructor(
    private readonly ops: OpsStore,
    private readonly cfg: NotifierConfig,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  /** Queues a notification (never throws into the caller; a failed enqueue is logged). */
  enqueue(event: ApprovalEvent, a: Approval): void {
    const now = this.clock();
    const row: OutboxRow = {
      delivery_id: newId('batch'),
      event,
      body: JSON.stringify({ event, approval: approvalJson(a), sent_at: new Date(now).toISOString() }),
      due_ms: now,
      attempts: 0,
    };
    this.ops
      .putMany('outbox', [{ key: row.delivery_id, value: row }])
      .then(() => this.kick())
      .catch((err: unknown) =>
        this.logger.error({ err, event }, 'approval notification could not be queued'),
      );
  }

  start(): void {
    this.timer = setInterval(() => this.kick(), TICK_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
  }

  private kick(): void {
    if (this.stopped || this.running) return;
    this.running = this.sendDue()
      .catch((err: unknown) => this.logger.warn({ err }, 'approval notifications: sender failed'))
      .finally(() => {
        this.running = undefined;
      });
  }

  private async sendDue(): Promise<void> {
    const rows = await this.ops.scan<OutboxRow>('outbox', { limit: 100 });
    for (const { key, value } of rows) {
      if (this.stopped) return;
      const now = this.clock();
      if (value.due_ms > now) continue;
      const claimed = await this.ops.update<OutboxRow, OutboxRow | undefined>('outbox', key, (cur) => {
        if (!cur || cur.due_ms > now || (cur.claimed_until_ms ?? 0) > now)
          return { value: cur, result: undefined };
        const next = { ...cur, claimed_by: this.cfg.replicaId, claimed_until_ms: now + CLAIM_MS };
        return { value: next, result: next };
      });
      if (!claimed) continue;
      const ok = await this.post(claimed);
      if (ok) {
        this.delivered++;
        await this.ops.delete('outbox', [key]);
        continue;
      }
      this.failedAttempts++;
      const attempts = claimed.attempts + 1;
      if (attempts >= MAX_ATTEMPTS) {
        this.logger.error(
          { delivery_id: claimed.delivery_id, event: claimed.event, attempts },
          'approval notification dropped after repeated failures',
        );
        await this.ops.delete('outbox', [key]);
        continue;
      }
      const retryIn = backoffDelay(attempts - 1, 500, 3_600_000);
      await this.ops.putMany('outbox', [
        { key, value: { ...claimed, attempts, due_ms: this.clock() + retryIn, claimed_until_ms: 0 } },
      ]);
    }
  }

  private async post(row: OutboxRow): Promise<boolean> {
    const ts = String(Math.floor(this.clock() / 1000));
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'user-agent': 'act-control-plane',
      'x-act-event': row.event,
      'x-act-delivery': row.delivery_id,
      'x-act-timestamp': ts,
    };
    if (this.cfg.secret)
      headers['x-act-signature'] =
        `sha256=${createHmac('sha256', this.cfg.secret).update(`${ts}.${row.body}`).digest('hex')}`;
    try {
      const res = await fetch(this.cfg.url, {
        method: 'POST',
        headers,
        body: row.body,
        signal: AbortSignal.timeout(TIMEOUT_MS),
        redirect: 'error',
      });
      await res.arrayBuffer().catch(() => undefined);
      if (res.ok) return true;
      this.logger.warn({ delivery_id: row.delivery_id, status: res.status }, 'approval notification refused');
    } catch (err) {
      this.logger.warn(
        { delivery_id: row.delivery_id, err: (err as Error).message },
        'approval notification could not be sent',
      );
    }
    return false;
  }
}
