/**
 * The control plane's side of SyncService: one session per sidecar stream.
 * Authenticates, reads the Hello, sends a snapshot or the deltas since the
 * sidecar's revision, then each commit as it happens (filtered by scope) and
 * heartbeats; stores audit batches idempotently and acknowledges them.
 */
import * as grpc from '@grpc/grpc-js';
import { ActError } from '../common/errors';
import type { Clock } from '../common/clock';
import { isId } from '../common/ids';
import { GRPC_STATUS } from '../common/status-map';
import { type Agent, type Approval, type AuditRecord, type Policy } from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import {
  PublicKey,
  Revocation,
  SyncResponse,
  SyncServiceService,
  type Change,
  type Hello,
  type SyncRequest,
  type SyncServiceServer,
} from '../gen/act/v1/sync';
import { fromBase64Url } from '../common/base64url';
import type { Logger } from '../observability/logger';
import type { CommitEvent, Store, StoreReader } from '../store/types';
import { SyncScope } from './scope';

/** What the hub needs from the control plane (kept narrow so sync/ does not depend on control-plane/). */
export interface HubDeps {
  store: Store;
  authenticate(
    authorization: string | undefined,
  ): Promise<{ role: string; name: string; agent_ids: string[] }>;
  /** Creates the approval a sidecar's APPROVAL_REQUIRED decision announced, or consumes one it used. */
  onSidecarDecisions(records: AuditRecord[]): Promise<void>;
  logger: Logger;
  clock: Clock;
}

export interface HubConfig {
  /** Heartbeat period (default 1000 ms). */
  heartbeatMs: number;
  /** Entities per snapshot message (default 1000). */
  snapshotChunk: number;
  /** Largest audit batch accepted (default 5000 records). */
  maxAuditBatch: number;
  /** A sidecar that lets this much unsent data pile up is disconnected (default 64 MiB). */
  maxBufferedBytes: number;
}

const EMPTY = Buffer.alloc(0);
/** Revisions a reconnecting sidecar may catch up by deltas; further behind, it gets a snapshot. */
const MAX_DELTA_CATCH_UP = 10_000;

export const DEFAULT_HUB_CONFIG: HubConfig = {
  heartbeatMs: 1000,
  snapshotChunk: 1000,
  maxAuditBatch: 5000,
  maxBufferedBytes: 64 << 20,
};

export interface HubMetrics {
  connected: number;
  snapshotsSent: number;
  auditRecordsStored: number;
}

type Call = grpc.ServerDuplexStream<SyncRequest, SyncResponse>;

export class SyncHub {
  private readonly sessions = new Set<Session>();
  private readonly allScopeCache = new WeakMap<CommitEvent, Buffer>();
  readonly metrics: HubMetrics = { connected: 0, snapshotsSent: 0, auditRecordsStored: 0 };
  /** Called whenever a sidecar reports an applied revision (benchmarks, metrics). */
  onApplied: ((sidecarId: string, revision: number) => void) | undefined;

  constructor(
    private readonly deps: HubDeps,
    private readonly config: HubConfig = DEFAULT_HUB_CONFIG,
  ) {}

  addTo(server: grpc.Server): void {
    const unimplemented = (_call: unknown, cb: grpc.sendUnaryData<never>) =>
      cb({ code: grpc.status.UNIMPLEMENTED, details: 'not yet' });
    const impl: SyncServiceServer = {
      sync: (call) => void this.open(call),
      requestApproval: unimplemented,
      consumeApproval: unimplemented,
      leaseBudget: unimplemented,
      releaseBudget: unimplemented,
    };
    // Responses may be handed over already encoded: a commit that goes to every unscoped
    // sidecar is encoded once, not once per stream (1,000 streams = 1,000 encodes otherwise).
    const service = {
      ...SyncServiceService,
      sync: {
        ...SyncServiceService.sync,
        responseSerialize: (v: SyncResponse | Buffer): Buffer =>
          Buffer.isBuffer(v) ? v : Buffer.from(SyncResponse.encode(v).finish()),
      },
    };
    server.addService(service, impl);
  }

  /** The encoded Delta of a commit for unscoped sidecars, made once per commit. */
  encodedForAll(e: CommitEvent): Buffer | undefined {
    let b = this.allScopeCache.get(e);
    if (b === undefined) {
      const changes = e.changes.filter((c) => c.kind?.$case !== 'token_issued');
      b =
        changes.length === 0
          ? EMPTY
          : Buffer.from(
              SyncResponse.encode({
                msg: { $case: 'delta', value: { revision: e.revision, changes } },
              }).finish(),
            );
      this.allScopeCache.set(e, b);
    }
    return b === EMPTY ? undefined : b;
  }

  get connected(): number {
    return this.sessions.size;
  }

  /** Ends every stream (shutdown); sidecars reconnect elsewhere or later. */
  stop(): void {
    for (const s of this.sessions) s.close(grpc.status.UNAVAILABLE, 'control plane shutting down');
  }

  private async open(call: Call): Promise<void> {
    const { logger } = this.deps;
    try {
      const who = await this.deps.authenticate(call.metadata.get('authorization')[0] as string | undefined);
      if (who.role !== 'sidecar' && who.role !== 'admin') {
        throw new ActError(
          'PERMISSION_DENIED',
          `Sync needs a key with the sidecar role; the key has role ${who.role}`,
        );
      }
      const hello = await firstMessage(call, 10_000);
      if (who.agent_ids.length > 0) {
        // A key limited to some agents may not sync others (nor all).
        const allowed = new Set(who.agent_ids);
        const asked = hello.agent_ids.length === 0 ? ['*'] : hello.agent_ids;
        const outside = asked.filter((a) => !allowed.has(a));
        if (outside.length > 0) {
          throw new ActError(
            'PERMISSION_DENIED',
            `this sidecar key may sync only its agents; out of scope: ${outside.slice(0, 5).join(', ')}`,
          );
        }
      }
      const session = new Session(call, hello, this, this.deps, this.config);
      this.sessions.add(session);
      this.metrics.connected = this.sessions.size;
      call.once('close', () => this.drop(session));
      call.once('cancelled', () => this.drop(session));
      call.once('error', () => this.drop(session));
      await session.start();
    } catch (err) {
      const e = err instanceof ActError ? err : new ActError('INTERNAL', 'sync failed', { cause: err });
      if (!(err instanceof ActError)) logger.error({ err }, 'sync session failed');
      else logger.warn({ code: e.code, msg: e.message }, 'sync refused');
      call.emit('error', { code: GRPC_STATUS[e.code], details: e.message });
    }
  }

  drop(s: Session): void {
    if (this.sessions.delete(s)) {
      s.dispose();
      this.metrics.connected = this.sessions.size;
      this.deps.logger.info({ sidecar_id: s.sidecarId }, 'sidecar disconnected');
    }
  }
}

function firstMessage(call: Call, timeoutMs: number): Promise<Hello> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => done(new ActError('INVALID_ARGUMENT', 'no Hello within 10 s')), timeoutMs);
    const done = (err: Error | undefined, hello?: Hello) => {
      clearTimeout(t);
      call.off('data', onData);
      call.off('end', onEnd);
      if (err) reject(err);
      else resolve(hello!);
    };
    const onData = (m: SyncRequest) => {
      if (m.msg?.$case !== 'hello')
        return done(new ActError('INVALID_ARGUMENT', 'the first Sync message must be a Hello'));
      const h = m.msg.value;
      if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(h.sidecar_id)) {
        return done(
          new ActError(
            'INVALID_ARGUMENT',
            'hello.sidecar_id must be 1-128 characters of A-Z a-z 0-9 _ . : -',
          ),
        );
      }
      if (h.agent_ids.length > 10_000)
        return done(new ActError('INVALID_ARGUMENT', 'hello.agent_ids may list at most 10000 agents'));
      for (const a of h.agent_ids) {
        if (a !== '*' && !isId(a, 'agent'))
          return done(
            new ActError(
              'INVALID_ARGUMENT',
              `hello.agent_ids: ${JSON.stringify(String(a).slice(0, 100))} is not an agent id`,
            ),
          );
      }
      done(undefined, h);
    };
    const onEnd = () => done(new ActError('INVALID_ARGUMENT', 'stream ended before Hello'));
    call.on('data', onData);
    call.once('end', onEnd);
  });
}

class Session {
  readonly sidecarId: string;
  private readonly scope: SyncScope;
  private sentRevision = 0;
  private live = false;
  private readonly queued: CommitEvent[] = [];
  private unsubscribe: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  /** Serializes sends so commit events, snapshot chunks and heartbeats keep their order. */
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly call: Call,
    private readonly hello: Hello,
    private readonly hub: SyncHub,
    private readonly deps: HubDeps,
    private readonly config: HubConfig,
  ) {
    this.sidecarId = hello.sidecar_id;
    this.scope = new SyncScope(hello.agent_ids);
  }

  async start(): Promise<void> {
    const { store, logger } = this.deps;
    // Subscribe before reading so no commit between the read and the subscription is lost.
    this.unsubscribe = store.onCommit((e) => {
      if (!this.live) this.queued.push(e);
      else this.enqueue(() => this.sendCommit(e));
    });
    this.call.on('data', (m: SyncRequest) => this.enqueueIncoming(m));
    this.call.on('end', () => this.close(grpc.status.OK, 'sidecar ended the stream'));

    const h = this.hello;
    let mode = 'snapshot';
    let deltas =
      h.store_id === store.storeId && h.last_revision > 0
        ? await store.changesSince(h.last_revision, MAX_DELTA_CATCH_UP)
        : 'too-old';
    // A full page may not reach the revisions queued since the subscription: a sidecar that far
    // behind gets a snapshot rather than a gap.
    if (deltas !== 'too-old' && deltas.length >= MAX_DELTA_CATCH_UP) deltas = 'too-old';
    if (deltas === 'too-old') {
      await this.sendSnapshot();
    } else {
      mode = 'deltas';
      await store.read((r) => this.initScope(r));
      this.sentRevision = h.last_revision;
      for (const d of deltas) await this.sendCommit({ revision: d.revision, changes: d.changes });
      if (!this.scope.all && this.scope.policies.size > 0) {
        // The scope was computed from today's tokens, so tokens issued while the sidecar was away
        // are already in it; resend the scope's policies (idempotent upserts) so none is missing.
        const policies = await store.read((r) => some<Policy>(r, 'policies', [...this.scope.policies]));
        await this.write({
          msg: {
            $case: 'delta',
            value: {
              revision: this.sentRevision,
              changes: policies.map((p) => ({ kind: { $case: 'policy', value: p } })),
            },
          },
        });
      }
    }
    for (const e of this.queued.splice(0)) await this.sendCommit(e);
    this.live = true;
    this.sendHeartbeat();
    this.heartbeat = setInterval(
      () => this.enqueue(async () => this.sendHeartbeat()),
      this.config.heartbeatMs,
    );
    this.heartbeat.unref();
    logger.info(
      {
        sidecar_id: this.sidecarId,
        scope: this.scope.all ? '*' : this.hello.agent_ids.length,
        from_revision: h.last_revision,
        revision: this.sentRevision,
        mode,
      },
      'sidecar connected',
    );
  }

  private enqueue(fn: () => Promise<void>): void {
    this.chain = this.chain.then(fn).catch((err: unknown) => {
      this.deps.logger.error({ err, sidecar_id: this.sidecarId }, 'sync send failed');
      this.close(grpc.status.INTERNAL, 'sync failed');
    });
  }

  private async initScope(r: StoreReader): Promise<void> {
    if (this.scope.all) return;
    for (const agentId of this.scope.agents) {
      for (const t of await tokensOf(r, agentId, this.deps.clock())) this.scope.addToken(t);
    }
  }

  private async sendSnapshot(): Promise<void> {
    const { store, clock } = this.deps;
    const now = clock();
    const revision = await store.revision();
    const changes: Change[] = [];
    await store.read(async (r) => {
      await this.initScope(r);
      const agents = this.scope.all
        ? await all<Agent>(r, 'agents')
        : await some<Agent>(r, 'agents', [...this.scope.agents]);
      for (const a of agents) changes.push({ kind: { $case: 'agent', value: a } });
      const policies = this.scope.all
        ? await all<Policy>(r, 'policies')
        : await some<Policy>(r, 'policies', [...this.scope.policies]);
      for (const p of policies) changes.push({ kind: { $case: 'policy', value: p } });
      const tokens = this.scope.all
        ? await all<TokenRow>(r, 'tokens')
        : (await Promise.all([...this.scope.agents].map((a) => tokensOf(r, a, 0)))).flat();
      for (const t of tokens) {
        if (t.revoked_at_ms !== 0 && t.expires_at_ms > now) {
          changes.push({
            kind: {
              $case: 'revocation',
              value: Revocation.fromPartial({
                token_id: t.token_id,
                revoked_at_ms: t.revoked_at_ms,
                expires_at_ms: t.expires_at_ms,
                agent_id: t.agent_id,
              }),
            },
          });
        }
      }
      for (const k of await all<{ key_id: string; public_key: string; created_at_ms: number }>(r, 'keys')) {
        changes.push({
          kind: {
            $case: 'public_key',
            value: PublicKey.fromPartial({
              key_id: k.key_id,
              public_key: fromBase64Url(k.public_key),
              created_at_ms: k.created_at_ms,
            }),
          },
        });
      }
      for (const a of await all<Approval>(r, 'approvals')) {
        const open =
          a.status === ApprovalStatus.PENDING ||
          a.status === ApprovalStatus.APPROVED ||
          a.status === ApprovalStatus.DENIED;
        if (open && Date.parse(a.expires_at) > now && this.scope.hasAgent(a.agent_id))
          changes.push({ kind: { $case: 'approval', value: a } });
      }
    });
    const chunk = this.config.snapshotChunk;
    for (let i = 0; i === 0 || i < changes.length; i += chunk) {
      await this.write({
        msg: {
          $case: 'snapshot',
          value: {
            revision,
            store_id: store.storeId,
            first: i === 0,
            last: i + chunk >= changes.length,
            changes: changes.slice(i, i + chunk),
          },
        },
      });
    }
    this.sentRevision = revision;
    this.hub.metrics.snapshotsSent++;
  }

  private async sendCommit(e: CommitEvent): Promise<void> {
    if (e.revision <= this.sentRevision) return;
    if (this.scope.all) {
      this.sentRevision = e.revision;
      const encoded = this.hub.encodedForAll(e);
      if (encoded) await this.write(encoded);
      return;
    }
    const out: Change[] = [];
    for (const c of e.changes) {
      const k = c.kind;
      if (k?.$case === 'token_issued') {
        // A new token may bring a policy into a scoped replica.
        const added = this.scope.addToken(k.value);
        if (added.length > 0) {
          const policies = await this.deps.store.read((r) => some<Policy>(r, 'policies', added));
          for (const p of policies) out.push({ kind: { $case: 'policy', value: p } });
        }
      } else if (this.scope.admits(c)) {
        out.push(c);
      }
    }
    this.sentRevision = e.revision;
    if (out.length > 0)
      await this.write({ msg: { $case: 'delta', value: { revision: e.revision, changes: out } } });
  }

  private sendHeartbeat(): void {
    if (this.closed) return;
    void this.write({
      msg: { $case: 'heartbeat', value: { revision: this.sentRevision, time_ms: this.deps.clock() } },
    });
  }

  private enqueueIncoming(m: SyncRequest): void {
    const msg = m.msg;
    if (msg === undefined) return;
    switch (msg.$case) {
      case 'audit_batch':
        // Stored in arrival order; acked only after the durable append.
        this.enqueue(() => this.storeBatch(msg.value.batch_id, msg.value.records));
        break;
      case 'applied':
        this.hub.onApplied?.(this.sidecarId, msg.value.revision);
        break;
      case 'hello':
        this.close(grpc.status.INVALID_ARGUMENT, 'Hello may be sent only once');
        break;
    }
  }

  private async storeBatch(batchId: string, records: AuditRecord[]): Promise<void> {
    if (records.length > this.config.maxAuditBatch) {
      return this.close(
        grpc.status.INVALID_ARGUMENT,
        `audit batch larger than ${this.config.maxAuditBatch} records`,
      );
    }
    for (const r of records) {
      if (r.source !== this.sidecarId || !isId(r.audit_id, 'audit')) {
        return this.close(
          grpc.status.INVALID_ARGUMENT,
          `audit record ${r.audit_id.slice(0, 80)} is not from sidecar ${this.sidecarId}`,
        );
      }
    }
    const stored = await this.deps.store.audit.append(records);
    this.hub.metrics.auditRecordsStored += stored;
    await this.deps.onSidecarDecisions(records);
    await this.write({ msg: { $case: 'audit_ack', value: { batch_id: batchId, stored } } });
  }

  private write(m: SyncResponse | Buffer): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.call.writableLength > this.config.maxBufferedBytes) {
      this.close(grpc.status.RESOURCE_EXHAUSTED, 'sidecar is not reading; reconnect to resync');
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      // Resolve once grpc-js took the message; do not wait for the peer (a slow sidecar must not stall the hub).
      // grpc-js typing says SyncResponse; the service's serializer also passes Buffers through.
      this.call.write(m as SyncResponse, () => resolve());
    });
  }

  close(code: grpc.status, details: string): void {
    if (this.closed) return;
    this.closed = true;
    this.dispose();
    if (code === grpc.status.OK) this.call.end();
    else this.call.emit('error', { code, details });
    this.hub.drop(this);
  }

  dispose(): void {
    this.unsubscribe?.();
    if (this.heartbeat) clearInterval(this.heartbeat);
  }
}

interface TokenRow {
  token_id: string;
  agent_id: string;
  policy_ids: string[];
  expires_at_ms: number;
  revoked_at_ms: number;
}

async function all<T>(
  r: StoreReader,
  table: 'agents' | 'policies' | 'tokens' | 'keys' | 'approvals',
): Promise<T[]> {
  const out: T[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await r.scan<T>(table, { limit: 1000, ...(after !== undefined ? { after } : {}) });
    for (const row of rows) out.push(row.value);
    if (rows.length < 1000) return out;
    after = rows[rows.length - 1]!.key;
  }
}

async function some<T>(r: StoreReader, table: 'agents' | 'policies', ids: string[]): Promise<T[]> {
  const out: T[] = [];
  for (const id of ids) {
    const v = await r.get<T>(table, id);
    if (v !== undefined) out.push(v);
  }
  return out;
}

/** Tokens of an agent; with `liveAt` > 0 only those neither revoked nor expired then. */
async function tokensOf(r: StoreReader, agentId: string, liveAt: number): Promise<TokenRow[]> {
  const prefix = `agent-token:${agentId}:`;
  const out: TokenRow[] = [];
  let after: string | undefined;
  for (;;) {
    const rows = await r.scan<number>('index', {
      prefix,
      limit: 1000,
      ...(after !== undefined ? { after } : {}),
    });
    for (const row of rows) {
      const t = await r.get<TokenRow>('tokens', row.key.slice(prefix.length));
      if (t && (liveAt === 0 || (t.revoked_at_ms === 0 && t.expires_at_ms > liveAt))) out.push(t);
    }
    if (rows.length < 1000) return out;
    after = rows[rows.length - 1]!.key;
  }
}
