/**
 * Helpers for the approval and receipt integration tests: the seed's billing and deploy
 * policies, approver keys, gRPC calls with a bearer as promises, a WaitForApproval stream
 * collected with a hook on each update, and a local webhook receiver that records every
 * delivery and can refuse, hang or be down on purpose.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import type {
  ApprovalUpdate,
  DecisionServiceClient,
  WaitForApprovalRequest,
} from '../../src/gen/act/v1/decision';
import type { Rest } from './control-plane-helpers';
import { SidecarFixture } from './sidecar-helpers';

/**
 * A SidecarFixture that stops its processes newest first: sidecars drain (ship their spools)
 * while the control plane they ship to is still up, instead of waiting out their drain deadline.
 */
export class ApprovalFixture extends SidecarFixture {
  override async teardown(): Promise<void> {
    this.procs.reverse();
    await super.teardown();
  }
}

/** The seed's billing use case: transactions over $1000 need a human. */
export const BILLING_POLICY = {
  name: 'Billing Policy',
  capabilities: ['read:account_balance', 'create:transaction'],
  approval_rules: [
    {
      expression: 'context.amount > 1000',
      actions: ['create:transaction'],
      description: 'transactions over $1000',
    },
  ],
};

/** The seed's DevOps use case: staging deploys are automatic, production needs a human. */
export const DEPLOY_POLICY = {
  name: 'Deployments',
  capabilities: ['deploy:service', 'read:build_log'],
  approval_rules: [{ expression: 'context.environment == "production"', description: 'production deploys' }],
};

/** gRPC metadata with `Authorization: Bearer <key>`. */
export function bearer(key: string): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
}

/** Calls a generated unary method by name with metadata, as a promise. */
export function unary<Res>(
  client: grpc.Client,
  method: string,
  req: unknown,
  md: grpc.Metadata,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client as unknown as Record<string, (...a: unknown[]) => unknown>)[method]!.call(
      client,
      req,
      md,
      { deadline: Date.now() + 30_000 },
      (err: grpc.ServiceError | null, res: Res) => (err ? reject(err) : resolve(res)),
    );
  });
}

/** Awaits `p` and asserts it fails with this gRPC status; returns the error. */
export async function rejectsWithStatus(p: Promise<unknown>, code: grpc.status): Promise<grpc.ServiceError> {
  try {
    await p;
  } catch (err) {
    const e = err as grpc.ServiceError;
    assert.equal(e.code, code, `expected ${grpc.status[code]}, got ${grpc.status[e.code]}: ${e.details}`);
    return e;
  }
  assert.fail(`expected ${grpc.status[code]}, but the call succeeded`);
}

/** Creates an API key with `role`; answers its secret and name. */
export async function createApiKey(
  api: Rest,
  name: string,
  role: string,
): Promise<{ secret: string; name: string }> {
  const r = await api('POST', '/api/api-keys', { name, role });
  assert.equal(r.status, 201, r.text);
  return { secret: r.body.secret as string, name };
}

export interface WaitResult {
  updates: ApprovalUpdate[];
  /** The stream's error, if it ended with one. */
  error?: grpc.ServiceError;
}

/**
 * Opens DecisionService.WaitForApproval and collects every update until the stream ends.
 * `onUpdate` runs on each update as it arrives (e.g. to approve once PENDING was seen); its
 * failure fails the result.
 */
export function collectWait(
  client: DecisionServiceClient,
  req: Partial<WaitForApprovalRequest> & { approval_id: string },
  opts: { md?: grpc.Metadata; onUpdate?: (u: ApprovalUpdate, n: number) => unknown } = {},
): Promise<WaitResult> {
  return new Promise((resolve, reject) => {
    const updates: ApprovalUpdate[] = [];
    const hooks: Promise<unknown>[] = [];
    const stream = client.waitForApproval(
      { token: '', timeout_ms: 30_000, ...req },
      opts.md ?? new grpc.Metadata(),
      { deadline: Date.now() + 60_000 },
    );
    stream.on('data', (u: ApprovalUpdate) => {
      updates.push(u);
      if (opts.onUpdate) hooks.push(Promise.resolve().then(() => opts.onUpdate!(u, updates.length - 1)));
    });
    let error: grpc.ServiceError | undefined;
    stream.on('error', (e: grpc.ServiceError) => (error = e));
    stream.on('close', () => {
      Promise.all(hooks).then(
        () => resolve(error ? { updates, error } : { updates }),
        (err: unknown) => reject(err instanceof Error ? err : new Error(String(err))),
      );
    });
  });
}

/** SHA-256 hex of canonical JSON {action, resource, context} (sorted keys), computed here independently. */
export function expectedRequestHash(
  action: string,
  resource: string,
  context: Record<string, unknown>,
): string {
  const canon = (v: unknown): string => {
    if (v === null || typeof v !== 'object') return JSON.stringify(v);
    if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canon(o[k])}`)
      .join(',')}}`;
  };
  return createHash('sha256').update(canon({ action, resource, context })).digest('hex');
}

/** One POST the receiver got. */
export interface Delivery {
  headers: http.IncomingHttpHeaders;
  raw: string;
  body: any;
  /** The status it was answered with; undefined while it hangs (or never answered). */
  answered?: number;
  /** True once the sender's connection for it closed. */
  closed: boolean;
}

/**
 * A local HTTP receiver for approval notifications. Behaviour per delivery id: refuse the
 * first `failFirst` attempts with 500, then 200; with `hang`, never answer at all.
 */
export class WebhookReceiver {
  readonly deliveries: Delivery[] = [];
  failFirst = 0;
  hang = false;
  private server: http.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  private readonly listeners = new Set<() => void>();
  port = 0;

  constructor(readonly secret: string) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hooks/act`;
  }

  /** Listens (on `port`, or a free one the first time). */
  async start(port = this.port): Promise<void> {
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const raw = Buffer.concat(chunks).toString('utf8');
        let body: unknown;
        try {
          body = JSON.parse(raw);
        } catch {
          body = undefined;
        }
        const d: Delivery = { headers: req.headers, raw, body, closed: false };
        res.on('close', () => {
          d.closed = true;
          this.changed();
        });
        const id = String(req.headers['x-act-delivery'] ?? '');
        const before = this.deliveries.filter((x) => x.headers['x-act-delivery'] === id).length;
        this.deliveries.push(d);
        if (!this.hang) {
          d.answered = before < this.failFirst ? 500 : 200;
          res
            .writeHead(d.answered, { 'content-type': 'text/plain' })
            .end(d.answered === 200 ? 'ok' : 'try again');
        }
        this.changed();
      });
    });
    server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  /** Stops listening and drops every open connection (a dead receiver). */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** Deliveries of `event` about `approvalId`, in arrival order. */
  of(event: string, approvalId: string): Delivery[] {
    return this.deliveries.filter(
      (d) => d.headers['x-act-event'] === event && d.body?.approval?.approval_id === approvalId,
    );
  }

  /** Waits until `pred` holds over the deliveries. */
  async until<T>(what: string, pred: () => T | undefined, timeoutMs = 30_000): Promise<T> {
    const now = pred();
    if (now !== undefined) return now;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        reject(new Error(`timed out waiting for ${what}; got ${this.summary()}`));
      }, timeoutMs);
      const check = () => {
        const v = pred();
        if (v === undefined) return;
        clearTimeout(timer);
        this.listeners.delete(check);
        resolve(v);
      };
      this.listeners.add(check);
    });
  }

  /** Waits for a delivery of `event` about `approvalId` that was answered 200. */
  delivered(event: string, approvalId: string, timeoutMs?: number): Promise<Delivery> {
    return this.until(
      `${event} for ${approvalId} delivered`,
      () => this.of(event, approvalId).find((d) => d.answered === 200),
      timeoutMs,
    );
  }

  /** Checks X-ACT-Signature as a receiver should: HMAC-SHA256 of "<X-ACT-Timestamp>.<body>". */
  signatureValid(d: Delivery, secret = this.secret): boolean {
    const ts = String(d.headers['x-act-timestamp'] ?? '');
    const sig = String(d.headers['x-act-signature'] ?? '');
    if (!/^\d+$/.test(ts) || !sig.startsWith('sha256=')) return false;
    const want = createHmac('sha256', secret).update(`${ts}.${d.raw}`).digest();
    const got = Buffer.from(sig.slice('sha256='.length), 'hex');
    return got.length === want.length && timingSafeEqual(got, want);
  }

  summary(): string {
    return JSON.stringify(
      this.deliveries.map((d) => ({
        event: d.headers['x-act-event'],
        delivery: d.headers['x-act-delivery'],
        approval: d.body?.approval?.approval_id,
        answered: d.answered,
      })),
    );
  }

  private changed(): void {
    for (const l of [...this.listeners]) l();
  }
}

/** A promise's state without awaiting it. */
export function settled(p: Promise<unknown>): () => boolean {
  let done = false;
  p.then(
    () => (done = true),
    () => (done = true),
  );
  return () => done;
}
