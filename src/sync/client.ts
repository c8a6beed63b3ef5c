/**
 * The sidecar's side of SyncService: keeps the replica current, ships the audit spool
 * upstream, and makes the calls a check needs from the control plane (approvals, budget
 * leases) on the same channel.
 *
 * Connecting: the control plane may be several addresses (replicas; or one DNS name with
 * several A records, which the channel itself spreads over). While none is reachable the only
 * pacing is the channel's own reconnect backoff (at most CHANNEL_MAX_BACKOFF_MS): a sidecar is
 * syncing again within about a second of a control plane being back. A stream that a reachable
 * control plane keeps refusing backs off exponentially; an authentication or permission error
 * is permanent (a wrong key does not fix itself). Messages are applied strictly in arrival order.
 */
import * as grpc from '@grpc/grpc-js';
import { backoffDelay } from '../common/backoff';
import type { Clock } from '../common/clock';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { PortUnavailable } from '../enforce/ports';
import type { Approval } from '../gen/act/v1/admin';
import {
  SyncRequest,
  SyncServiceService,
  type ConsumeApprovalRequest,
  type ConsumeApprovalResponse,
  type LeaseBudgetRequest,
  type LeaseBudgetResponse,
  type ReleaseBudgetRequest,
  type ReleaseBudgetResponse,
  type RequestApprovalRequest,
  type SyncResponse,
  type SyncServiceClient,
} from '../gen/act/v1/sync';
import type { AuditShipping } from '../audit/shipping';
import type { Logger } from '../observability/logger';
import type { ReplicaWriter } from '../replica';

/** Applied after deltas goes upstream at most this often (see `applied`). */
const APPLIED_EVERY_MS = 100;
/** How long one connection attempt waits for a channel before trying the next address. */
const CONNECT_WAIT_MS = 1000;
/** The channel's reconnect backoff cap while the control plane is unreachable. */
const CHANNEL_MAX_BACKOFF_MS = 500;
/** Deadline of the calls a check waits on (approvals, leases). */
export const CALL_DEADLINE_MS = 2000;

export interface SyncClientConfig {
  /** Control plane gRPC addresses (host:port or a DNS name); tried in turn. */
  targets: string[];
  credentials: grpc.ChannelCredentials;
  /** Extra channel options (e.g. grpc.ssl_target_name_override for --tls-server-name). */
  channelOptions?: grpc.ChannelOptions;
  /** Bearer API key with the sidecar role. */
  apiKey: string;
  sidecarId: string;
  agentIds: string[];
  version: string;
  /** Backoff of a stream a reachable control plane refuses (base, cap). */
  backoffBaseMs: number;
  backoffMaxMs: number;
  /** Records per audit batch (default 500). */
  auditBatchSize: number;
  /** Audit batches awaiting an ack at once (default 4). */
  maxInFlightBatches: number;
}

/**
 * A Sync client whose request serializer also takes bytes that are already an encoded
 * SyncRequest: audit batches are assembled from the spool's encoded records without
 * decoding and re-encoding each one.
 */
const SyncClientCtor = grpc.makeGenericClientConstructor(
  {
    ...SyncServiceService,
    sync: {
      ...SyncServiceService.sync,
      requestSerialize: (v: SyncRequest | Buffer): Buffer =>
        Buffer.isBuffer(v) ? v : Buffer.from(SyncRequest.encode(v).finish()),
    },
  },
  'act.v1.SyncService',
) as unknown as typeof SyncServiceClient;

/** SyncRequest{audit_batch: AuditBatch{batch_id, records}} from encoded AuditRecords. */
export function encodeAuditBatchRequest(batchId: string, frames: readonly Uint8Array[]): Buffer {
  const batch = new BinaryWriter();
  batch.uint32(10).string(batchId); // AuditBatch.batch_id = 1
  for (const f of frames) batch.uint32(18).bytes(f); // AuditBatch.records = 2 (a message is length-delimited bytes)
  const req = new BinaryWriter();
  req.uint32(18).bytes(batch.finish()); // SyncRequest.audit_batch = 2
  return Buffer.from(req.finish());
}

export type SyncState = 'connecting' | 'syncing' | 'live' | 'backoff' | 'failed' | 'stopped';

/** The last refusal of an audit batch, for metrics, logs and health. */
export interface AuditRejection {
  batchId: string;
  reason: string;
  auditId: string;
  atMs: number;
  /** Consecutive refusals (reset by the next ack). */
  count: number;
  /** When the batch is shipped again. */
  retryAtMs: number;
}

export class SyncClient {
  state: SyncState = 'connecting';
  /** Last time anything arrived from the control plane (ms); 0 = never in this process. */
  lastContactMs = 0;
  /** Revision the control plane said it was at, last heartbeat. */
  upstreamRevision = 0;
  reconnects = 0;
  shippedRecords = 0;
  rejectedBatches = 0;
  /** Set while audit shipping is held back by a refusal; cleared by the next ack. */
  rejection: AuditRejection | undefined;
  /** The address of the current (or last) stream. */
  target = '';
  private readonly clients: (InstanceType<typeof SyncClientCtor> | undefined)[];
  private targetIndex = 0;
  private call: grpc.ClientDuplexStream<SyncRequest, SyncResponse> | undefined;
  private refusals = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private pumpTimer: NodeJS.Timeout | undefined;
  private appliedTimer: NodeJS.Timeout | undefined;
  private appliedRevision = 0;
  private inFlight = new Map<string, number>();
  private work: Promise<void> = Promise.resolve();
  private stopped = false;
  private readonly metadata = new grpc.Metadata();
  /** Called after each applied snapshot or delta (metrics, tests). */
  onApplied: ((revision: number) => void) | undefined;
  /**
   * Called when the control plane refused a Hello that named earlier sidecar ids (one belongs to
   * another key). Resolves true when it dropped what it could (adopted spools): the client then
   * tries again at once instead of giving up.
   */
  onEarlierIdsRefused: (() => Promise<boolean>) | undefined;
  private lastHelloEarlier = 0;

  constructor(
    private readonly cfg: SyncClientConfig,
    private readonly replica: ReplicaWriter,
    private readonly spool: AuditShipping,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    if (cfg.targets.length === 0) throw new Error('no control-plane address');
    this.clients = cfg.targets.map(() => undefined);
    this.metadata.set('authorization', `Bearer ${cfg.apiKey}`);
  }

  start(): void {
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    if (this.appliedTimer) clearTimeout(this.appliedTimer);
    const call = this.call;
    if (call) {
      // Say goodbye and half-close, and give the control plane a moment to see it: a stream the
      // sidecar ended is a stop, one that just breaks may be a partition (receipts tell them apart).
      const closed = new Promise<void>((r) => {
        call.once('end', () => r());
        call.once('error', () => r());
        call.once('close', () => r());
      });
      call.write({ msg: { $case: 'goodbye', value: { reason: 'stopping' } } });
      call.end();
      await Promise.race([closed, new Promise<void>((r) => setTimeout(r, 500).unref())]);
      call.cancel();
    }
    await this.work.catch(() => undefined);
    for (const c of this.clients) c?.close();
  }

  /** A record was spooled: ship soon (batching whatever else arrives meanwhile). */
  kick(): void {
    if (this.pumpTimer === undefined && this.state === 'live') {
      this.pumpTimer = setTimeout(() => {
        this.pumpTimer = undefined;
        this.pump();
      }, 20);
      this.pumpTimer.unref();
    }
  }

  /** Opens a new stream (its Hello names spools adopted since the last one). */
  restartStream(): void {
    this.call?.cancel();
  }

  /** Resolves when every spooled record is acknowledged, or false at the deadline (drain on shutdown). */
  async drained(deadlineMs: number): Promise<boolean> {
    while (this.spool.depth > 0) {
      if (this.clock() >= deadlineMs || this.stopped) return false;
      this.kick();
      await new Promise((r) => setTimeout(r, 50));
    }
    return true;
  }

  // ---- the calls a check makes (approvals, budgets) ----

  requestApproval(req: RequestApprovalRequest): Promise<Approval> {
    return this.unary('requestApproval', req);
  }

  consumeApproval(req: ConsumeApprovalRequest): Promise<ConsumeApprovalResponse> {
    return this.unary('consumeApproval', req);
  }

  leaseBudget(req: LeaseBudgetRequest): Promise<LeaseBudgetResponse> {
    return this.unary('leaseBudget', req);
  }

  releaseBudget(req: ReleaseBudgetRequest): Promise<ReleaseBudgetResponse> {
    return this.unary('releaseBudget', req);
  }

  /**
   * A unary call on the current channel, failing fast when it is not connected: a check must not
   * wait for a reconnect. Any failure is PortUnavailable (the check fails closed with its reason).
   */
  private unary<Res>(
    method: 'requestApproval' | 'consumeApproval' | 'leaseBudget' | 'releaseBudget',
    req: unknown,
  ): Promise<Res> {
    const client = this.clients[this.targetIndex % this.clients.length];
    if (client === undefined || this.stopped || this.state === 'failed')
      return Promise.reject(new PortUnavailable('no connection to the control plane'));
    return new Promise<Res>((resolve, reject) => {
      const fn = client[method].bind(client) as unknown as (
        r: unknown,
        md: grpc.Metadata,
        opts: grpc.CallOptions,
        cb: (err: grpc.ServiceError | null, res: Res) => void,
      ) => grpc.ClientUnaryCall;
      fn(req, this.metadata, { deadline: Date.now() + CALL_DEADLINE_MS }, (err, res) => {
        if (err)
          reject(new PortUnavailable(`${grpc.status[err.code] ?? err.code}: ${err.details}`, { cause: err }));
        else resolve(res);
      });
    });
  }

  // ---- the stream ----

  private clientFor(i: number): InstanceType<typeof SyncClientCtor> {
    let c = this.clients[i];
    if (c === undefined) {
      c = new SyncClientCtor(this.cfg.targets[i]!, this.cfg.credentials, {
        'grpc.keepalive_time_ms': 20_000,
        'grpc.keepalive_timeout_ms': 10_000,
        'grpc.max_receive_message_length': 64 * 1024 * 1024,
        // The channel's reconnect backoff is the only pacing while the control plane is down.
        'grpc.initial_reconnect_backoff_ms': 100,
        'grpc.max_reconnect_backoff_ms': CHANNEL_MAX_BACKOFF_MS,
        // A DNS name with several A records: spread over them, fail over when one dies.
        'grpc.service_config': JSON.stringify({
          loadBalancingConfig: [{ pick_first: { shuffleAddressList: true } }],
        }),
        ...this.cfg.channelOptions,
      });
      this.clients[i] = c;
    }
    return c;
  }

  private connect(): void {
    if (this.stopped) return;
    this.state = 'connecting';
    const i = this.targetIndex % this.cfg.targets.length;
    const client = this.clientFor(i);
    this.target = this.cfg.targets[i]!;
    client.waitForReady(Date.now() + CONNECT_WAIT_MS, (err) => {
      if (this.stopped) return;
      if (err) {
        // Not reachable within the wait: the next address (or this one again, after the channel's own backoff).
        this.targetIndex++;
        this.state = 'backoff';
        this.retryTimer = setTimeout(() => this.connect(), 0);
        this.retryTimer.unref();
        return;
      }
      this.open(client);
    });
  }

  private open(client: InstanceType<typeof SyncClientCtor>): void {
    const call = client.sync(this.metadata);
    this.call = call;
    let gotData = false;
    call.on('data', (m: SyncResponse) => {
      if (!gotData) {
        gotData = true;
        this.refusals = 0;
        this.state = 'syncing';
      }
      this.lastContactMs = this.clock();
      // Apply strictly in order; a failure ends the stream and a reconnect resyncs.
      this.work = this.work
        .then(() => this.handle(m))
        .catch((err: unknown) => {
          this.logger.error({ err }, 'applying sync message failed; reconnecting');
          call.cancel();
        });
    });
    call.on('error', (err: grpc.ServiceError) => this.onDisconnect(call, err, gotData));
    call.on('end', () => this.onDisconnect(call, undefined, gotData));
    call.write({
      msg: {
        $case: 'hello',
        value: {
          sidecar_id: this.cfg.sidecarId,
          agent_ids: this.cfg.agentIds,
          last_revision: this.replica.revision,
          store_id: this.replica.storeId,
          version: this.cfg.version,
          previous_sidecar_ids: this.earlierIds(),
        },
      },
    });
  }

  private earlierIds(): string[] {
    const ids = this.spool.earlierSources.filter((s) => s !== this.cfg.sidecarId);
    this.lastHelloEarlier = ids.length;
    return ids;
  }

  private async handle(m: SyncResponse): Promise<void> {
    const msg = m.msg;
    if (msg === undefined) return;
    const r = this.replica;
    switch (msg.$case) {
      case 'snapshot': {
        const s = msg.value;
        if (s.first) r.beginSnapshot(s.revision, s.store_id);
        r.snapshotChunk(s.changes);
        if (s.last) {
          await r.commitSnapshot();
          r.touch(this.clock());
          this.logger.info({ revision: s.revision }, 'snapshot applied');
          this.applied(s.revision, true);
        }
        break;
      }
      case 'delta':
        await r.applyDelta(msg.value.revision, msg.value.changes);
        r.touch(this.clock());
        this.applied(msg.value.revision);
        break;
      case 'heartbeat': {
        const hb = msg.value;
        this.upstreamRevision = hb.revision;
        r.touch(this.clock());
        // Everything up to hb.revision that concerns this scope has been sent before it.
        if (hb.revision > r.revision) {
          await r.applyDelta(hb.revision, []);
          this.applied(hb.revision);
        }
        if (this.state !== 'live') {
          this.state = 'live';
          this.logger.info({ revision: r.revision, target: this.target }, 'sync live');
        }
        this.pump();
        break;
      }
      case 'audit_ack': {
        const n = this.inFlight.get(msg.value.batch_id);
        if (n !== undefined) {
          this.inFlight.delete(msg.value.batch_id);
          await this.spool.ack(msg.value.batch_id);
          this.shippedRecords += n;
        }
        if (this.rejection) {
          this.logger.info({ batch_id: this.rejection.batchId }, 'audit shipping resumed');
          this.rejection = undefined;
        }
        // A full batch waiting (a backlog draining) goes at once; otherwise the 20 ms kick
        // ships what gathers meanwhile. Shipping on every ack at low rates meant a batch per
        // record (control-plane CPU per record doubled at 1 in flight) and put the batch's
        // write in front of the check's response on the event loop.
        if (this.spool.depth - this.inFlightRecords() >= this.cfg.auditBatchSize) this.pump();
        else if (this.spool.depth > this.inFlightRecords()) this.kick();
        break;
      }
      case 'audit_reject': {
        const v = msg.value;
        if (this.inFlight.delete(v.batch_id)) this.spool.nack(v.batch_id);
        // Later batches were refused with it or will be (they link to it): ship them again too,
        // after a growing pause — never a reconnect.
        for (const id of [...this.inFlight.keys()]) {
          this.inFlight.delete(id);
          this.spool.nack(id);
        }
        this.rejectedBatches++;
        const count = (this.rejection?.count ?? 0) + 1;
        const pause = Math.min(300_000, 1000 * 2 ** Math.min(count - 1, 9));
        const now = this.clock();
        this.rejection = {
          batchId: v.batch_id,
          reason: v.reason,
          auditId: v.audit_id,
          atMs: now,
          count,
          retryAtMs: now + pause,
        };
        this.logger.error(
          {
            batch_id: v.batch_id,
            audit_id: v.audit_id,
            reason: v.reason,
            refusals: count,
            retry_in_ms: pause,
          },
          'audit batch refused by the control plane; records kept, shipping paused',
        );
        if (this.pumpTimer) clearTimeout(this.pumpTimer);
        this.pumpTimer = setTimeout(() => {
          this.pumpTimer = undefined;
          this.pump();
        }, pause);
        this.pumpTimer.unref();
        break;
      }
    }
  }

  /**
   * Reports the applied revision upstream: at once after a snapshot; otherwise at most once per
   * APPLIED_EVERY_MS, carrying the latest revision. Revocation receipts are built on it; in a burst
   * of revocations 1,000 sidecars answering every delta doubled the control plane's messages.
   */
  private applied(revision: number, now = false): void {
    this.onApplied?.(revision);
    this.appliedRevision = revision;
    if (now) {
      this.sendApplied();
      return;
    }
    if (this.appliedTimer === undefined) {
      this.appliedTimer = setTimeout(() => this.sendApplied(), APPLIED_EVERY_MS);
      this.appliedTimer.unref();
    }
  }

  private sendApplied(): void {
    if (this.appliedTimer) clearTimeout(this.appliedTimer);
    this.appliedTimer = undefined;
    this.call?.write({ msg: { $case: 'applied', value: { revision: this.appliedRevision } } });
  }

  private inFlightRecords(): number {
    let n = 0;
    for (const count of this.inFlight.values()) n += count;
    return n;
  }

  /** Sends audit batches while there is room in flight (not while a refusal's pause lasts). */
  private pump(): void {
    const call = this.call;
    if (!call || this.state !== 'live') return;
    if (this.rejection && this.clock() < this.rejection.retryAtMs) return;
    while (this.inFlight.size < this.cfg.maxInFlightBatches) {
      const batch = this.spool.nextRawBatch(this.cfg.auditBatchSize);
      if (!batch) {
        // Records spooled but not yet durable (os level: until the next flush) go on a later tick.
        if (this.spool.depth > this.inFlightRecords()) this.kick();
        return;
      }
      this.inFlight.set(batch.batchId, batch.frames.length);
      // The pass-through serializer (see SyncClientCtor) sends these bytes as they are.
      call.write(encodeAuditBatchRequest(batch.batchId, batch.frames) as unknown as SyncRequest);
      // After a refusal, one batch at a time until one is acknowledged.
      if (this.rejection) return;
    }
  }

  /** Authentication and permission errors are permanent: a wrong key does not fix itself. */
  private fail(err: grpc.ServiceError): void {
    this.state = 'failed';
    this.logger.error(
      { code: grpc.status[err.code], details: err.details },
      'sync refused: check ACT_SIDECAR_KEY (a key with the sidecar role, allowed for these agents) and --sidecar-id; not retrying',
    );
  }

  private onDisconnect(
    call: grpc.ClientDuplexStream<SyncRequest, SyncResponse>,
    err: grpc.ServiceError | undefined,
    gotData: boolean,
  ): void {
    if (this.call !== call) return;
    this.call = undefined;
    // A new stream starts with Hello (its last_revision); a pending Applied belonged to this one.
    if (this.appliedTimer) clearTimeout(this.appliedTimer);
    this.appliedTimer = undefined;
    // Unacked batches go back to the spool; the control plane dedupes any that did arrive.
    this.inFlight.clear();
    this.spool.resetInFlight();
    if (this.stopped) return;
    if (
      err?.code === grpc.status.PERMISSION_DENIED &&
      this.lastHelloEarlier > 0 &&
      this.onEarlierIdsRefused !== undefined
    ) {
      const handler = this.onEarlierIdsRefused;
      this.state = 'backoff';
      this.logger.warn(
        { details: err.details },
        'sync refused an earlier sidecar id named in the Hello; trying again without what can be dropped',
      );
      // Deliberately not awaited: the disconnect handler is synchronous; the retry follows it.
      void handler().then(
        (dropped) => {
          if (this.stopped) return;
          if (dropped) this.connect();
          else this.fail(err);
        },
        () => this.fail(err),
      );
      return;
    }
    if (err && (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED)) {
      this.fail(err);
      return;
    }
    this.reconnects++;
    this.state = 'backoff';
    // A stream that was serving reconnects at once (the channel paces reconnects to a dead
    // control plane); one refused before any data backs off, and tries the next address.
    let delay = 0;
    if (!gotData) {
      delay =
        this.cfg.backoffBaseMs + backoffDelay(this.refusals++, this.cfg.backoffBaseMs, this.cfg.backoffMaxMs);
      this.targetIndex++;
    }
    this.logger.warn(
      {
        code: err ? grpc.status[err.code] : 'END',
        details: err?.details,
        retry_in_ms: delay,
        target: this.target,
      },
      'sync disconnected',
    );
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.retryTimer.unref();
  }
}
