/**
 * `ACTClient`: asks the pod-local ACT sidecar "may I?" over gRPC (`act.v1.DecisionService`).
 * One channel per client, reused by every call; a deadline on every call; grpc-js's own retry
 * policy, on UNAVAILABLE only and bounded. A deny is a value; no answer is an error.
 */
import * as grpc from '@grpc/grpc-js';
import { approvalFromWire, decisionFromWire, type ApprovalUpdate, type Decision } from './decision.js';
import { ACTError, ACTProtocolError, fromGrpcError } from './errors.js';
import {
  DecisionServiceClient,
  type ApprovalUpdate as WireApprovalUpdate,
  type CheckPermissionResponse,
} from './gen/act/v1/decision.js';
import { checkBatch, checkRequest, isPlainObject, type CheckItem, type CheckRequest } from './validate.js';

/** The sidecar's default gRPC address (the product's `ACT_SIDECAR_GRPC_ADDR` default). */
export const DEFAULT_ADDRESS = '127.0.0.1:8711';
/** The most items one `checkBatch()` call takes (the sidecar's bound). */
export const MAX_BATCH = 100;
/** The longest wait the sidecar accepts (15 minutes). */
export const MAX_APPROVAL_WAIT_MS = 900_000;
const DEFAULT_APPROVAL_WAIT_MS = 60_000;
/** Extra time beyond a wait's own timeout for the sidecar's last message to arrive. */
const WAIT_GRACE_MS = 10_000;
const SERVICE = 'act.v1.DecisionService';

export interface ACTClientOptions {
  /** The agent's ACT token ("act_…"). Default: the ACT_TOKEN environment variable. */
  token?: string | undefined;
  /**
   * The sidecar's gRPC address, "host:port" or "unix:/path/to/socket". Default: the first entry
   * of ACT_SIDECAR_GRPC_ADDR, else "127.0.0.1:8711".
   */
  address?: string | undefined;
  /**
   * Deadline of each check in milliseconds, retries included (default 2000). A call with no answer
   * by then rejects with ACTTimeoutError.
   */
  timeoutMs?: number | undefined;
  /**
   * Attempts per call when the sidecar is unreachable or answers UNAVAILABLE, 1-5 (default 3; 1 turns
   * retries off). No other status is retried. Backoff 50 ms doubling to 500 ms, with jitter (grpc-js).
   */
  maxAttempts?: number | undefined;
  /**
   * Channel credentials. Default: plaintext, for the pod-local sidecar on loopback or a unix socket;
   * pass `grpc.credentials.createSsl(…)` to reach the control plane's central enforcement over TLS.
   */
  credentials?: grpc.ChannelCredentials | undefined;
}

/** Per-call options. */
export interface CallOptions {
  /** Overrides the client's `timeoutMs` for this call. */
  timeoutMs?: number | undefined;
  /** Cancels the call; it then rejects with an ACTError of code CANCELLED. */
  signal?: AbortSignal | undefined;
}

/** Options of `waitForApproval()`. */
export interface WaitForApprovalOptions {
  /** How long the sidecar waits for a decision, 1-900000 ms (default 60000). */
  timeoutMs?: number | undefined;
  /** Called with every update as it arrives (the current state first). */
  onUpdate?: ((update: ApprovalUpdate) => void) | undefined;
  /** Cancels the wait; it then rejects with an ACTError of code CANCELLED. */
  signal?: AbortSignal | undefined;
}

/**
 * A client of the ACT sidecar's decision API.
 *
 * ```ts
 * import { ACTClient } from '@act-platform/sdk';
 * const act = new ACTClient({ token: process.env.ACT_TOKEN });
 * if (await act.checkPermission({ action: 'read:customer_profile', resource: 'customer_123' })) …
 * ```
 */
export class ACTClient {
  /** The address this client talks to (never the token). */
  readonly address: string;
  private readonly token: string;
  private readonly timeoutMs: number;
  private readonly client: DecisionServiceClient;
  private readonly metadata = new grpc.Metadata();
  private closed = false;

  constructor(options: ACTClientOptions = {}) {
    if (!isPlainObject(options as unknown))
      throw new TypeError('new ACTClient() takes an options object { token?, address? }');
    const token = options.token ?? process.env.ACT_TOKEN;
    if (typeof token !== 'string' || token === '')
      throw new TypeError('ACTClient needs a token: pass { token } or set ACT_TOKEN');
    // A header cannot carry these, and a trailing newline from a file is a common slip.
    if (/[\s\p{Cc}]/u.test(token))
      throw new TypeError('ACTClient: the token contains whitespace or control characters');
    const address = options.address ?? firstAddress(process.env.ACT_SIDECAR_GRPC_ADDR) ?? DEFAULT_ADDRESS;
    if (typeof address !== 'string' || address.trim() === '')
      throw new TypeError('ACTClient: address must be "host:port" or "unix:/path"');
    this.timeoutMs = positiveInt(options.timeoutMs, 2000, 'timeoutMs', 2 ** 31 - 1);
    const maxAttempts = positiveInt(options.maxAttempts, 3, 'maxAttempts', 5);
    this.token = token;
    this.address = address;
    this.client = new DecisionServiceClient(
      address,
      options.credentials ?? grpc.credentials.createInsecure(),
      channelOptions(maxAttempts),
    );
    // The control plane's central enforcement accepts the token itself as the bearer; the sidecar ignores it.
    this.metadata.set('authorization', `Bearer ${token}`);
  }

  /**
   * May the agent do this? Resolves to `true` only for an ALLOW decision; a deny or a required
   * approval resolves to `false` (use `check()` to see why). Rejects when no decision could be made
   * (ACTUnavailableError, ACTTimeoutError, …); throws a TypeError for a malformed request.
   */
  async checkPermission(request: CheckRequest, options?: CallOptions): Promise<boolean> {
    if (arguments.length > 2) throw new TypeError('checkPermission() takes (request, options?)');
    const d = await this.decide(request, options, 'checkPermission()');
    return d.allowed === true;
  }

  /** Like `checkPermission()`, resolving to the whole decision (reason, audit id, approval id, details). */
  async check(request: CheckRequest, options?: CallOptions): Promise<Decision> {
    if (arguments.length > 2) throw new TypeError('check() takes (request, options?)');
    return this.decide(request, options, 'check()');
  }

  /**
   * Checks several actions (at most 100) in one call; results keep the request order, each decided
   * and audited on its own.
   */
  async checkBatch(items: CheckItem[], options?: CallOptions): Promise<Decision[]> {
    if (arguments.length > 2) throw new TypeError('checkBatch() takes (items, options?)');
    const wire = checkBatch(items, MAX_BATCH);
    const call = callOptions(options, 'checkBatch()');
    const res = await this.unary<{ results: CheckPermissionResponse[] }>(call, (md, opts, cb) =>
      this.client.checkPermissions(
        {
          token: this.token,
          items: wire.map((w) => ({ action: w.action, resource: w.resource, context: w.context })),
        },
        md,
        opts,
        cb,
      ),
    );
    // A result out of place would pair a decision with the wrong action: refuse the whole answer.
    if (res.results.length !== wire.length)
      throw new ACTProtocolError(`checkBatch(): ${wire.length} items but ${res.results.length} results`);
    return res.results.map((r, i) => {
      if (r.action !== wire[i]!.action)
        throw new ACTProtocolError(
          `checkBatch(): result ${i} is for "${r.action}", not "${wire[i]!.action}"`,
        );
      return decisionFromWire(r, wire[i]!.action);
    });
  }

  /**
   * Waits for a human to decide an approval (from an APPROVAL_REQUIRED decision) and resolves to the
   * last update: APPROVED / DENIED / EXPIRED / USED with `decided: true`, or PENDING with
   * `decided: false` when `timeoutMs` passed first. After APPROVED, repeat exactly the same check with
   * `approvalId` to be allowed (once).
   */
  async waitForApproval(approvalId: string, options: WaitForApprovalOptions = {}): Promise<ApprovalUpdate> {
    if (typeof approvalId !== 'string' || approvalId === '')
      throw new TypeError('waitForApproval() takes the approval id ("approval_…") as its first argument');
    if (!isPlainObject(options as unknown))
      throw new TypeError('waitForApproval(): options must be an object { timeoutMs?, onUpdate?, signal? }');
    const waitMs = positiveInt(
      options.timeoutMs,
      DEFAULT_APPROVAL_WAIT_MS,
      'timeoutMs',
      MAX_APPROVAL_WAIT_MS,
    );
    const { onUpdate, signal } = options;
    if (onUpdate !== undefined && typeof onUpdate !== 'function')
      throw new TypeError('waitForApproval(): onUpdate must be a function');
    abortSignal(signal, 'waitForApproval()');
    this.assertOpen();
    return new Promise<ApprovalUpdate>((resolve, reject) => {
      if (signal?.aborted) return reject(cancelled(signal));
      let last: ApprovalUpdate | undefined;
      let failed: ACTError | undefined;
      const stream = this.client.waitForApproval(
        { approval_id: approvalId, token: this.token, timeout_ms: waitMs },
        this.metadata,
        { deadline: Date.now() + waitMs + WAIT_GRACE_MS },
      );
      const onAbort = () => {
        failed = cancelled(signal!);
        stream.cancel();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (u: WireApprovalUpdate) => {
        if (u.approval_id !== approvalId) {
          failed = new ACTProtocolError(
            `waitForApproval(): an update for "${u.approval_id}", not "${approvalId}"`,
          );
          stream.cancel();
          return;
        }
        last = approvalFromWire(u);
        try {
          onUpdate?.(last);
        } catch (err) {
          failed = new ACTError('CANCELLED', 'waitForApproval(): onUpdate threw', { cause: err });
          stream.cancel();
        }
      });
      stream.on('error', (err: grpc.ServiceError) => {
        signal?.removeEventListener('abort', onAbort);
        reject(failed ?? fromGrpcError(err, this.address));
      });
      stream.on('end', () => {
        signal?.removeEventListener('abort', onAbort);
        if (failed) reject(failed);
        else if (last) resolve(last);
        else reject(new ACTProtocolError('waitForApproval(): the stream ended without an update'));
      });
      // 'status' fires after 'end' or 'error'; nothing more to do there.
    });
  }

  /** Closes the channel. Later calls reject with an ACTError of code CLOSED; calls in flight are cancelled. */
  close(): void {
    this.closed = true;
    this.client.close();
  }

  private async decide(request: unknown, options: unknown, what: string): Promise<Decision> {
    const wire = checkRequest(request, what);
    const call = callOptions(options, what);
    const res = await this.unary<CheckPermissionResponse>(call, (md, opts, cb) =>
      this.client.checkPermission({ token: this.token, ...wire }, md, opts, cb),
    );
    return decisionFromWire(res, wire.action);
  }

  private assertOpen(): void {
    if (this.closed) throw new ACTError('CLOSED', 'ACTClient is closed');
  }

  private unary<T>(
    call: { timeoutMs: number | undefined; signal: AbortSignal | undefined },
    start: (
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (err: grpc.ServiceError | null, res: T) => void,
    ) => grpc.ClientUnaryCall,
  ): Promise<T> {
    this.assertOpen();
    const { signal } = call;
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(cancelled(signal));
      let aborted: ACTError | undefined;
      const onAbort = () => {
        aborted = cancelled(signal!);
        c.cancel();
      };
      const c = start(
        this.metadata,
        { deadline: Date.now() + (call.timeoutMs ?? this.timeoutMs) },
        (err, res) => {
          signal?.removeEventListener('abort', onAbort);
          if (aborted) return reject(aborted);
          if (err)
            return reject(
              this.closed
                ? new ACTError('CLOSED', 'ACTClient was closed during the call', { cause: err })
                : fromGrpcError(err, this.address),
            );
          if (res === null || typeof res !== 'object') return reject(new ACTProtocolError('empty answer'));
          resolve(res);
        },
      );
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }
}

/** grpc-js channel options: the retry policy (gRFC A6), applied by grpc-js itself. */
function channelOptions(maxAttempts: number): grpc.ChannelOptions {
  const methodConfig =
    maxAttempts > 1
      ? [
          {
            name: [{ service: SERVICE }],
            retryPolicy: {
              maxAttempts,
              initialBackoff: '0.05s',
              maxBackoff: '0.5s',
              backoffMultiplier: 2,
              retryableStatusCodes: ['UNAVAILABLE'],
            },
          },
        ]
      : [];
  return {
    'grpc.service_config': JSON.stringify({ methodConfig }),
    'grpc.enable_retries': maxAttempts > 1 ? 1 : 0,
  };
}

function firstAddress(env: string | undefined): string | undefined {
  const first = env?.split(',')[0]?.trim();
  return first ? first : undefined;
}

function positiveInt(v: unknown, dflt: number, what: string, max: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max)
    throw new TypeError(`${what} must be an integer from 1 to ${max}, got ${String(v)}`);
  return v;
}

function callOptions(
  o: unknown,
  what: string,
): { timeoutMs: number | undefined; signal: AbortSignal | undefined } {
  if (o === undefined) return { timeoutMs: undefined, signal: undefined };
  if (!isPlainObject(o)) throw new TypeError(`${what}: options must be an object { timeoutMs?, signal? }`);
  for (const k of Object.keys(o))
    if (k !== 'timeoutMs' && k !== 'signal') throw new TypeError(`${what}: unknown option "${k}"`);
  return {
    timeoutMs:
      o.timeoutMs === undefined ? undefined : positiveInt(o.timeoutMs, 0, `${what}: timeoutMs`, 2 ** 31 - 1),
    signal: abortSignal(o.signal, what),
  };
}

function abortSignal(s: unknown, what: string): AbortSignal | undefined {
  if (s === undefined) return undefined;
  if (!(s instanceof AbortSignal)) throw new TypeError(`${what}: signal must be an AbortSignal`);
  return s;
}

function cancelled(signal: AbortSignal): ACTError {
  return new ACTError('CANCELLED', 'the call was cancelled', { cause: signal.reason });
}
