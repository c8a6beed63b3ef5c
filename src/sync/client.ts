/**
 * The sidecar's side of SyncService: keeps the replica current and ships the
 * audit spool upstream. Reconnects forever with exponential backoff and jitter,
 * except after an authentication error, which is permanent (a wrong key does not
 * fix itself). Messages are applied strictly in arrival order.
 */
import * as grpc from '@grpc/grpc-js';
import { backoffDelay } from '../common/backoff';
import type { Clock } from '../common/clock';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import {
  SyncRequest,
  SyncServiceService,
  type SyncResponse,
  type SyncServiceClient,
} from '../gen/act/v1/sync';
import type { Logger } from '../observability/logger';
import type { ReplicaWriter } from '../replica';

/** What the client needs from the audit spool. */
/** Applied after deltas goes upstream at most this often (see `applied`). */
const APPLIED_EVERY_MS = 100;

export interface AuditShipping {
  /** The next batch of spooled records, still encoded (AuditRecord messages). */
  nextRawBatch(maxRecords: number): { batchId: string; frames: Uint8Array[] } | undefined;
  ack(batchId: string): unknown;
  resetInFlight(): void;
  /** Records not yet acknowledged (pending and in flight). */
  readonly depth: number;
}

export interface SyncClientConfig {
  /** Control plane gRPC address, host:port. */
  target: string;
  credentials: grpc.ChannelCredentials;
  /** Extra channel options (e.g. grpc.ssl_target_name_override for --tls-server-name). */
  channelOptions?: grpc.ChannelOptions;
  /** Bearer API key with the sidecar role. */
  apiKey: string;
  sidecarId: string;
  agentIds: string[];
  version: string;
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

export class SyncClient {
  state: SyncState = 'connecting';
  /** Last time anything arrived from the control plane (ms); 0 = never in this process. */
  lastContactMs = 0;
  /** Revision the control plane said it was at, last heartbeat. */
  upstreamRevision = 0;
  reconnects = 0;
  shippedRecords = 0;
  private client: InstanceType<typeof SyncClientCtor> | undefined;
  private call: grpc.ClientDuplexStream<SyncRequest, SyncResponse> | undefined;
  private attempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private pumpTimer: NodeJS.Timeout | undefined;
  private appliedTimer: NodeJS.Timeout | undefined;
  private appliedRevision = 0;
  private inFlight = new Map<string, number>();
  private work: Promise<void> = Promise.resolve();
  private stopped = false;
  /** Called after each applied snapshot or delta (metrics, tests). */
  onApplied: ((revision: number) => void) | undefined;

  constructor(
    private readonly cfg: SyncClientConfig,
    private readonly replica: ReplicaWriter,
    private readonly spool: AuditShipping,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  start(): void {
    this.client = new SyncClientCtor(this.cfg.target, this.cfg.credentials, {
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
      // The channel's own reconnect backoff (default 1 s growing to 120 s) would stack on ours.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2000,
      ...this.cfg.channelOptions,
    });
    this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.pumpTimer) clearTimeout(this.pumpTimer);
    if (this.appliedTimer) clearTimeout(this.appliedTimer);
    this.call?.end();
    this.call?.cancel();
    await this.work.catch(() => undefined);
    this.client?.close();
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

  private connect(): void {
    if (this.stopped) return;
    this.state = 'connecting';
    const md = new grpc.Metadata();
    md.set('authorization', `Bearer ${this.cfg.apiKey}`);
    const call = this.client!.sync(md);
    this.call = call;
    let gotData = false;
    call.on('data', (m: SyncResponse) => {
      if (!gotData) {
        gotData = true;
        this.attempt = 0;
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
    call.on('error', (err: grpc.ServiceError) => this.onDisconnect(call, err));
    call.on('end', () => this.onDisconnect(call, undefined));
    call.write({
      msg: {
        $case: 'hello',
        value: {
          sidecar_id: this.cfg.sidecarId,
          agent_ids: this.cfg.agentIds,
          last_revision: this.replica.revision,
          store_id: this.replica.storeId,
          version: this.cfg.version,
          previous_sidecar_ids: [],
        },
      },
    });
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
        if (hb.revision > r.revision) await r.applyDelta(hb.revision, []);
        if (this.state !== 'live') {
          this.state = 'live';
          this.logger.info({ revision: r.revision }, 'sync live');
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
        // A full batch waiting (a backlog draining) goes at once; otherwise the 20 ms kick
        // ships what gathers meanwhile. Shipping on every ack at low rates meant a batch per
        // record (control-plane CPU per record doubled at 1 in flight) and put the batch's
        // write in front of the check's response on the event loop.
        if (this.spool.depth - this.inFlightRecords() >= this.cfg.auditBatchSize) this.pump();
        else if (this.spool.depth > this.inFlightRecords()) this.kick();
        break;
      }
    }
  }

  /**
   * Reports the applied revision upstream: at once after a snapshot; after deltas at most once per
   * APPLIED_EVERY_MS, carrying the latest revision. Nothing upstream waits on it, and in a burst of
   * revocations 1,000 sidecars answering every delta doubled the control plane's messages.
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

  /** Sends audit batches while there is room in flight. */
  private inFlightRecords(): number {
    let n = 0;
    for (const count of this.inFlight.values()) n += count;
    return n;
  }

  private pump(): void {
    const call = this.call;
    if (!call || this.state !== 'live') return;
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
    }
  }

  private onDisconnect(
    call: grpc.ClientDuplexStream<SyncRequest, SyncResponse>,
    err: grpc.ServiceError | undefined,
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
    if (err && (err.code === grpc.status.UNAUTHENTICATED || err.code === grpc.status.PERMISSION_DENIED)) {
      this.state = 'failed';
      this.logger.error(
        { code: grpc.status[err.code], details: err.details },
        'sync refused: check ACT_SIDECAR_KEY (a key with the sidecar role); not retrying',
      );
      return;
    }
    const delay = backoffDelay(this.attempt++, this.cfg.backoffBaseMs, this.cfg.backoffMaxMs);
    this.reconnects++;
    this.state = 'backoff';
    this.logger.warn(
      { code: err ? grpc.status[err.code] : 'END', details: err?.details, retry_in_ms: delay },
      'sync disconnected',
    );
    this.retryTimer = setTimeout(() => this.connect(), delay);
    this.retryTimer.unref();
  }
}
