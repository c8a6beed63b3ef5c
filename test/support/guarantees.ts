/**
 * Helpers for the guarantee tests (test/integration/guarantees-*.test.ts): the approval flow
 * over REST at any enforcement point, checks at the control plane, a raw Sync stream that
 * plays a (hostile) sidecar, hash-chained audit records made by hand, `act audit verify`,
 * and freezing a process (SIGSTOP) to cut it off without closing its sockets.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { AuditChain } from '../../src/audit/chain';
import { AuditRecord } from '../../src/gen/act/v1/admin';
import { Decision, ReasonCode } from '../../src/gen/act/v1/decision';
import { SyncServiceClient, type Hello, type SyncResponse } from '../../src/gen/act/v1/sync';
import type { Rest } from './control-plane-helpers';
import { ACT_BIN, type Spawned } from './processes';
import { waitFor } from './sidecar-helpers';

const run = promisify(execFile);

export type CheckResult = { status: number; body: any; text: string };
/** A check at some enforcement point (the sidecar's REST, the control plane's REST). */
export type CheckAt = (body: Record<string, unknown>) => Promise<CheckResult>;

/** A central check at the control plane (authorized with the REST client's key). */
export function centralCheck(api: Rest): CheckAt {
  return (body) => api('POST', '/api/enforcement/check', body);
}

/** Counts of each decision in a list of check answers. */
export function tally(rs: readonly CheckResult[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of rs) {
    const k = r.status === 200 ? `${r.body.decision}/${r.body.reason_code}` : `HTTP ${r.status}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/** Waits until the control plane holds the approval (it may arrive later than the answer). */
export async function approvalAtCp(api: Rest, approvalId: string): Promise<any> {
  return waitFor(`approval ${approvalId} at the control plane`, async () => {
    const r = await api('GET', `/api/approvals/${approvalId}`);
    return r.status === 200 ? r.body : undefined;
  });
}

/**
 * Makes a check that hits an approval rule at `check`, and approves what the approver is shown.
 * @returns the approval id and the approval as the approver saw it
 */
export async function requestAndApprove(
  api: Rest,
  check: CheckAt,
  body: Record<string, unknown>,
): Promise<{ approvalId: string; shown: any; auditId: string }> {
  const r = await check(body);
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.decision, 'APPROVAL_REQUIRED', r.text);
  const approvalId = r.body.approval_id as string;
  assert.match(approvalId, /^approval_/);
  const shown = await approvalAtCp(api, approvalId);
  assert.equal(shown.status, 'PENDING');
  const ok = await api('POST', `/api/approvals/${approvalId}/approve`, { comment: 'looks fine' });
  assert.equal(ok.status, 200, ok.text);
  assert.equal(ok.body.status, 'APPROVED');
  return { approvalId, shown, auditId: r.body.audit_id as string };
}

/** The approval's status at the control plane. */
export async function approvalStatus(api: Rest, approvalId: string): Promise<string> {
  const r = await api('GET', `/api/approvals/${approvalId}`);
  assert.equal(r.status, 200, r.text);
  return r.body.status as string;
}

/** Runs `act audit verify` against a control plane; resolves with stdout (rejects on a non-zero exit). */
export async function auditVerify(cp: { url: string; adminKey: string }): Promise<string> {
  const { stdout } = await run(process.execPath, [ACT_BIN, 'audit', 'verify'], {
    env: { ...process.env, ACT_URL: cp.url, ACT_KEY: cp.adminKey },
    timeout: 60_000,
  });
  return stdout;
}

/** Lines of a process's output whose JSON `msg` matches. */
export function logLines(p: Spawned, msg: string | RegExp): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of p.output) {
    if (!line.startsWith('{')) continue;
    try {
      const rec = JSON.parse(line) as Record<string, unknown>;
      const m = String(rec.msg ?? '');
      if (typeof msg === 'string' ? m === msg : msg.test(m)) out.push(rec);
    } catch {
      // not JSON
    }
  }
  return out;
}

/** Freezes a process (SIGSTOP): its sockets stay open but nothing answers. Returns the thaw. */
export function freeze(p: Spawned): () => void {
  p.child.kill('SIGSTOP');
  let thawed = false;
  return () => {
    if (thawed) return;
    thawed = true;
    p.child.kill('SIGCONT');
  };
}

// ---- a raw Sync stream: what a sidecar (or an attacker with a SIDECAR key) can send ----

/** What came back on a raw Sync stream for one audit batch. */
export type BatchAnswer =
  | { kind: 'ack'; stored: number }
  | { kind: 'reject'; reason: string; auditId: string }
  | { kind: 'error'; code: number; details: string };

export class RawSync {
  readonly messages: SyncResponse[] = [];
  error: grpc.ServiceError | undefined;
  private readonly client: SyncServiceClient;
  private readonly call: grpc.ClientDuplexStream<unknown, SyncResponse>;
  private readonly listeners = new Set<() => void>();

  constructor(grpcPort: number, key: string, hello: Partial<Hello> & { sidecar_id: string }) {
    this.client = new SyncServiceClient(`127.0.0.1:${grpcPort}`, grpc.credentials.createInsecure());
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${key}`);
    this.call = this.client.sync(md) as unknown as grpc.ClientDuplexStream<unknown, SyncResponse>;
    this.call.on('data', (m: SyncResponse) => {
      this.messages.push(m);
      this.notify();
    });
    this.call.on('error', (err: grpc.ServiceError) => {
      this.error = err;
      this.notify();
    });
    this.call.on('end', () => this.notify());
    this.call.write({
      msg: {
        $case: 'hello',
        value: {
          agent_ids: [],
          last_revision: 0,
          store_id: '',
          version: 'guarantees-test',
          previous_sidecar_ids: [],
          ...hello,
        },
      },
    });
  }

  private notify(): void {
    for (const l of [...this.listeners]) l();
  }

  /** Resolves with the first message matching `pred`, or the stream's error; rejects after `ms`. */
  private next<T>(
    pred: (m: SyncResponse) => T | undefined,
    ms: number,
    what: string,
  ): Promise<T | BatchAnswer> {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (const m of this.messages) {
          const v = pred(m);
          if (v !== undefined) return finish(v);
        }
        if (this.error) return finish({ kind: 'error', code: this.error.code, details: this.error.details });
        return undefined;
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`raw Sync: no ${what} within ${ms} ms`));
      }, ms);
      const finish = (v: T | BatchAnswer) => {
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(v);
      };
      this.listeners.add(check);
      check();
    });
  }

  /** Waits until the stream is serving (first heartbeat) or refused. */
  async ready(ms = 10_000): Promise<{ kind: 'live' } | BatchAnswer> {
    return this.next(
      (m) => (m.msg?.$case === 'heartbeat' ? ({ kind: 'live' } as const) : undefined),
      ms,
      'heartbeat',
    );
  }

  /** Sends an audit batch; resolves with its ack, its rejection, or the stream's error. */
  async sendBatch(batchId: string, records: AuditRecord[], ms = 10_000): Promise<BatchAnswer> {
    this.call.write({ msg: { $case: 'audit_batch', value: { batch_id: batchId, records } } });
    return this.next<BatchAnswer>(
      (m) => {
        if (m.msg?.$case === 'audit_ack' && m.msg.value.batch_id === batchId)
          return { kind: 'ack', stored: m.msg.value.stored };
        if (m.msg?.$case === 'audit_reject' && m.msg.value.batch_id === batchId)
          return { kind: 'reject', reason: m.msg.value.reason, auditId: m.msg.value.audit_id };
        return undefined;
      },
      ms,
      `answer to batch ${batchId}`,
    ) as Promise<BatchAnswer>;
  }

  close(): void {
    this.call.removeAllListeners('data');
    this.call.on('error', () => undefined);
    this.call.cancel();
    this.client.close();
  }
}

let forged = 0;

/** An audit record as a sidecar would make it (before sealing); `over` sets any field. */
export function recordFor(over: Partial<AuditRecord> & { agent_id: string }): AuditRecord {
  forged++;
  return AuditRecord.fromPartial({
    audit_id: `audit_forged${Date.now().toString(36)}${String(forged).padStart(6, '0')}`,
    time: new Date().toISOString(),
    token_id: '',
    action: 'create:transaction',
    resource: 'acct_1',
    decision: Decision.ALLOW,
    reason_code: ReasonCode.GRANTED,
    reason: 'Token valid, capability granted',
    allowed: true,
    context: {},
    policy_ids: [],
    policy_revision: 1,
    latency_us: 10,
    ...over,
  });
}

/** Seals records into a chain of `source` starting after (seq, prevHash): correct hashes and links. */
export function sealChain(source: string, records: AuditRecord[], seq = 0, prevHash = ''): AuditRecord[] {
  const chain = new AuditChain(source, seq, prevHash);
  return records.map((r) => chain.seal(r));
}
