/**
 * The control plane's side of SyncService: one session per sidecar stream.
 * Authenticates, reads the Hello, sends a snapshot or the deltas since the
 * sidecar's revision, then each commit as it happens (filtered by scope) and
 * heartbeats; ingests audit batches (each record checked against the key's scope, the
 * Hello's sources and its chain) and acknowledges or refuses them; answers the unary
 * calls an enforcement point makes during a check (approvals, budget leases).
 *
 * Scope holds both ways: what a sidecar receives is limited to its agents, and what it
 * may write is limited to records about the agents its key may serve, under sidecar ids
 * bound to its key (never a reserved id such as the control plane's own chain source).
 */
import * as grpc from '@grpc/grpc-js';
import { ActError, invalid } from '../common/errors';
import type { Clock } from '../common/clock';
import { isId } from '../common/ids';
import { toGrpcError } from '../common/status-map';
import { type Agent, type Approval, type AuditRecord, type Policy } from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import {
  BudgetKind,
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
import { parseCheckRequest } from '../decision/request';
import type {
  ApprovalRequestInput,
  ConsumeInput,
  ConsumeResult,
  LeaseGrant,
  LeaseRequest,
  LeaseReturn,
} from '../enforce/ports';
import type { Logger } from '../observability/logger';
import type { TokenRecord } from '../store/records';
import {
  ChainViolation,
  type CommitEvent,
  type IngestResult,
  type Store,
  type StoreReader,
} from '../store/types';
import { SyncScope } from './scope';

/** Who opened a stream or made a call (an authenticated API key). */
export interface HubPrincipal {
  api_key_id: string;
  role: string;
  name: string;
  /** Agents the key may serve; empty = any. */
  agent_ids: string[];
}

/** What the hub tells the sidecar registry (receipts, listing, id bindings). */
export interface HubRegistry {
  /** Binds sidecar ids to the key; throws PERMISSION_DENIED for an id another key holds. */
  claim(ids: readonly string[], apiKeyId: string): Promise<void>;
  connected(s: {
    sidecar_id: string;
    api_key_id: string;
    agent_ids: string[];
    applied_revision: number;
    version: string;
  }): void;
  applied(sidecarId: string, revision: number): void;
  /** Writes the changed sessions for the other replicas now. */
  flush(): Promise<void>;
  contact(sidecarId: string): void;
  policies(sidecarId: string, policyIds: string[]): void;
  /** `cleanly`: the sidecar ended the stream itself (it stopped). */
  disconnected(sidecarId: string, cleanly?: boolean): void;
}

/** Ids no sidecar may use: the control plane's own chain sources. */
export function isReservedSource(id: string): boolean {
  return id === 'control-plane' || id.startsWith('control-plane:');
}

/** What the hub needs from the control plane (kept narrow so sync/ does not depend on control-plane/). */
export interface HubDeps {
  store: Store;
  authenticate(authorization: string | undefined): Promise<HubPrincipal>;
  registry: HubRegistry;
  /** The approval owner: the only way a sidecar changes approval state. */
  approvals: {
    request(i: ApprovalRequestInput): Promise<Approval>;
    consume(i: ConsumeInput): Promise<ConsumeResult>;
  };
  /** The budget ledger. */
  budgets: {
    lease(r: LeaseRequest): Promise<LeaseGrant>;
    release(rs: readonly LeaseReturn[]): Promise<number>;
  };
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
  auditBatchesRejected: number;
  auditChainGaps: number;
}

type Call = grpc.ServerDuplexStream<SyncRequest, SyncResponse>;

export class SyncHub {
  private readonly sessions = new Set<Session>();
  private readonly allScopeCache = new WeakMap<CommitEvent, Buffer>();
  readonly metrics: HubMetrics = {
    connected: 0,
    snapshotsSent: 0,
    auditRecordsStored: 0,
    auditBatchesRejected: 0,
    auditChainGaps: 0,
  };
  /** Called whenever a sidecar reports an applied revision (benchmarks, metrics). */
  onApplied: ((sidecarId: string, revision: number) => void) | undefined;

  constructor(
    private readonly deps: HubDeps,
    private readonly config: HubConfig = DEFAULT_HUB_CONFIG,
  ) {}

  addTo(server: grpc.Server): void {
    const { approvals, budgets } = this.deps;
    const impl: SyncServiceServer = {
      sync: (call) => void this.open(call),
      requestApproval: this.unary(async (r, who) => {
        this.inScope(who, r.agent_id);
        // The same bounds as a check's fields (the context is what an approver is shown).
        const input = parseCheckRequest({
          token: 'act_', // not judged here: the request names its token by id
          action: r.action,
          resource: r.resource,
          context: r.context ?? {},
        });
        if (!isId(r.token_id, 'tok')) throw invalid('token_id', 'token_id must be a "tok_..." id');
        if (!isId(r.audit_id, 'audit')) throw invalid('audit_id', 'audit_id must be an "audit_..." id');
        checkSourceName(r.source, 'source');
        return approvals.request({
          source: r.source,
          auditId: r.audit_id,
          agentId: r.agent_id,
          tokenId: r.token_id,
          action: input.action,
          resource: input.resource,
          context: input.context,
          policyId: bounded(r.policy_id, 'policy_id', 80),
          rule: bounded(r.rule, 'rule', 4096),
        });
      }),
      consumeApproval: this.unary(async (r, who) => {
        this.inScope(who, r.agent_id);
        if (!isId(r.approval_id, 'approval'))
          throw invalid('approval_id', 'approval_id must be an "approval_..." id');
        checkSourceName(r.source, 'source');
        const out = await approvals.consume({
          approvalId: r.approval_id,
          agentId: r.agent_id,
          tokenId: bounded(r.token_id, 'token_id', 80),
          action: bounded(r.action, 'action', 256),
          resource: bounded(r.resource, 'resource', 1024),
          requestHash: bounded(r.request_hash, 'request_hash', 64),
          source: r.source,
          auditId: bounded(r.audit_id, 'audit_id', 80),
          notAfterMs: r.not_after_ms,
        });
        return {
          consumed: out.consumed,
          status: out.consumed ? ApprovalStatus.USED : ApprovalStatus.APPROVAL_STATUS_UNSPECIFIED,
          reason: out.reason,
        };
      }),
      leaseBudget: this.unary(async (r, who) => {
        this.inScope(who, r.agent_id);
        if (!isId(r.policy_id, 'policy')) throw invalid('policy_id', 'policy_id must be a "policy_..." id');
        const kind = r.kind === BudgetKind.DAILY ? 'DAILY' : r.kind === BudgetKind.RATE ? 'RATE' : undefined;
        if (kind === undefined) throw invalid('kind', 'kind must be DAILY or RATE');
        const g = await budgets.lease({ agentId: r.agent_id, policyId: r.policy_id, kind, want: r.want });
        return {
          lease_id: g.leaseId,
          granted: g.granted,
          window: g.window,
          valid_ms: g.validMs,
          remaining: g.remaining,
          retry_after_ms: g.retryAfterMs,
          limit: g.limit,
          policy_version: 0,
        };
      }),
      releaseBudget: this.unary(async (r, who) => {
        if (r.returns.length > 10_000) throw invalid('returns', 'at most 10000 returns per call');
        for (const x of r.returns) this.inScope(who, x.agent_id);
        const returned = await budgets.release(
          r.returns.map((x) => ({
            leaseId: x.lease_id,
            agentId: x.agent_id,
            policyId: x.policy_id,
            window: x.window,
            unused: x.unused,
          })),
        );
        return { returned };
      }),
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

  /** A unary call: authenticated as for Sync, errors through the one mapper. */
  private unary<Req, Res>(fn: (req: Req, who: HubPrincipal) => Promise<Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, cb) => {
      void (async () => {
        try {
          const who = await this.authorize(call.metadata);
          cb(null, await fn(call.request, who));
        } catch (err) {
          cb(toGrpcError(err, this.deps.logger));
        }
      })();
    };
  }

  private async authorize(md: grpc.Metadata): Promise<HubPrincipal> {
    const who = await this.deps.authenticate(md.get('authorization')[0] as string | undefined);
    if (who.role !== 'sidecar' && who.role !== 'admin') {
      throw new ActError(
        'PERMISSION_DENIED',
        `Sync needs a key with the sidecar role; the key has role ${who.role}`,
      );
    }
    return who;
  }

  /** A key limited to some agents acts only for them. */
  private inScope(who: HubPrincipal, agentId: string): void {
    if (!isId(agentId, 'agent')) throw invalid('agent_id', 'agent_id must be an "agent_..." id');
    if (who.agent_ids.length > 0 && !who.agent_ids.includes(agentId))
      throw new ActError('PERMISSION_DENIED', `this key may not act for agent ${agentId}`);
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
      const who = await this.authorize(call.metadata);
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
      // A sidecar id (and each earlier id it still ships audit for) belongs to one key.
      await this.deps.registry.claim([hello.sidecar_id, ...hello.previous_sidecar_ids], who.api_key_id);
      const session = new Session(call, hello, who, this, this.deps, this.config);
      this.sessions.add(session);
      this.metrics.connected = this.sessions.size;
      call.once('close', () => this.drop(session));
      call.once('cancelled', () => this.drop(session));
      call.once('error', () => this.drop(session));
      await session.start();
    } catch (err) {
      if (err instanceof ActError) logger.warn({ code: err.code, msg: err.message }, 'sync refused');
      call.emit('error', toGrpcError(err, logger));
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
      if (h.previous_sidecar_ids.length > 64)
        return done(new ActError('INVALID_ARGUMENT', 'hello.previous_sidecar_ids may list at most 64 ids'));
      for (const [i, id] of [h.sidecar_id, ...h.previous_sidecar_ids].entries()) {
        try {
          checkSourceName(id, i === 0 ? 'hello.sidecar_id' : `hello.previous_sidecar_ids[${i - 1}]`);
        } catch (err) {
          return done(err as Error);
        }
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
  /** In the sidecar registry (from the start of the session, before its first read). */
  private registered = false;
  private readonly queued: CommitEvent[] = [];
  private unsubscribe: (() => void) | undefined;
  private heartbeat: NodeJS.Timeout | undefined;
  private closed = false;
  /** Serializes sends so commit events, snapshot chunks and heartbeats keep their order. */
  private chain: Promise<void> = Promise.resolve();

  /** Chain sources this stream may ship records of. */
  private readonly sources: ReadonlySet<string>;
  private disposed = false;

  constructor(
    private readonly call: Call,
    private readonly hello: Hello,
    private readonly who: HubPrincipal,
    private readonly hub: SyncHub,
    private readonly deps: HubDeps,
    private readonly config: HubConfig,
  ) {
    this.sidecarId = hello.sidecar_id;
    this.scope = new SyncScope(hello.agent_ids);
    this.sources = new Set([hello.sidecar_id, ...hello.previous_sidecar_ids]);
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
    // Registered (and written for the other replicas) before anything is read: a receipt that does
    // not see this sidecar scanned before the row was written, so before the read below, which
    // therefore includes the change the receipt is for.
    this.deps.registry.connected({
      sidecar_id: this.sidecarId,
      api_key_id: this.who.api_key_id,
      agent_ids: this.scope.all ? ['*'] : [...this.scope.agents],
      applied_revision: h.store_id === store.storeId ? h.last_revision : 0,
      version: h.version.slice(0, 64),
    });
    this.registered = true;
    await this.deps.registry.flush();
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
    if (!this.scope.all) this.deps.registry.policies(this.sidecarId, [...this.scope.policies]);
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
    let revision = 0;
    const changes: Change[] = [];
    await store.read(async (r) => {
      // The snapshot is labelled with the revision its read holds, exactly.
      revision = await r.revision();
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
          this.deps.registry.policies(this.sidecarId, [...this.scope.policies]);
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
    this.deps.registry.contact(this.sidecarId);
    switch (msg.$case) {
      case 'audit_batch':
        // Stored in arrival order; acked only after the durable append.
        this.enqueue(() => this.storeBatch(msg.value.batch_id, msg.value.records));
        break;
      case 'applied':
        this.deps.registry.applied(this.sidecarId, msg.value.revision);
        this.hub.onApplied?.(this.sidecarId, msg.value.revision);
        break;
      case 'goodbye':
        this.endedBySidecar = true;
        break;
      case 'hello':
        this.close(grpc.status.INVALID_ARGUMENT, 'Hello may be sent only once');
        break;
    }
  }

  /**
   * Ingests a batch: every record must be about an agent this stream may serve, from a source
   * the Hello named, and fit its chain (the store checks hash and link atomically). Otherwise the
   * batch is refused whole with an AuditReject and the stream stays open: the sidecar keeps the
   * records and retries with backoff. Audit records never change approval state.
   */
  private async storeBatch(batchId: string, records: AuditRecord[]): Promise<void> {
    const reject = async (reason: string, auditId = '') => {
      this.hub.metrics.auditBatchesRejected++;
      this.deps.logger.warn(
        { sidecar_id: this.sidecarId, batch_id: batchId.slice(0, 128), audit_id: auditId, reason },
        'audit batch refused',
      );
      await this.write({
        msg: { $case: 'audit_reject', value: { batch_id: batchId, reason, audit_id: auditId } },
      });
    };
    if (records.length > this.config.maxAuditBatch)
      return reject(`audit batch larger than ${this.config.maxAuditBatch} records`);
    const keyAgents = this.who.agent_ids.length > 0 ? new Set(this.who.agent_ids) : undefined;
    for (const r of records) {
      const id = String(r.audit_id).slice(0, 80);
      if (!isId(r.audit_id, 'audit')) return reject(`record ${id}: audit_id is not an "audit_..." id`, id);
      if (!this.sources.has(r.source))
        return reject(
          `record ${id}: source ${JSON.stringify(r.source.slice(0, 130))} is not this stream's sidecar id (or an earlier id named in its Hello)`,
          id,
        );
      // Records about no agent (an unreadable token) are allowed; any other agent must be in scope.
      if (
        r.agent_id !== '' &&
        ((keyAgents !== undefined && !keyAgents.has(r.agent_id)) || !this.scope.hasAgent(r.agent_id))
      )
        return reject(`record ${id}: agent ${r.agent_id.slice(0, 80)} is outside this sidecar's scope`, id);
    }
    let result: IngestResult;
    try {
      result = await this.deps.store.audit.ingest(records);
    } catch (err) {
      if (err instanceof ChainViolation) return reject(err.message, err.auditId.slice(0, 80));
      throw err;
    }
    this.hub.metrics.auditRecordsStored += result.stored;
    this.hub.metrics.auditChainGaps += result.gaps;
    if (result.gaps > 0 || result.restarts > 0)
      this.deps.logger.warn(
        { sidecar_id: this.sidecarId, gaps: result.gaps, restarts: result.restarts },
        'audit chain gap or restart accepted (records lost, or a new spool under an old id, upstream)',
      );
    await this.write({ msg: { $case: 'audit_ack', value: { batch_id: batchId, stored: result.stored } } });
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
    if (this.disposed) return;
    this.disposed = true;
    this.unsubscribe?.();
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.registered) this.deps.registry.disconnected(this.sidecarId, this.endedBySidecar);
  }

  /** Set when the sidecar said Goodbye (a clean stop), as opposed to losing the stream. */
  private endedBySidecar = false;
}

type TokenRow = Pick<TokenRecord, 'token_id' | 'agent_id' | 'policy_ids' | 'expires_at_ms' | 'revoked_at_ms'>;

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

/** A sidecar id / chain source: 1-128 of A-Z a-z 0-9 _ . : -, and not a reserved id. */
function checkSourceName(id: string, field: string): void {
  if (typeof id !== 'string' || !/^[A-Za-z0-9_.:-]{1,128}$/.test(id))
    throw new ActError('INVALID_ARGUMENT', `${field} must be 1-128 characters of A-Z a-z 0-9 _ . : -`);
  if (isReservedSource(id))
    throw new ActError(
      'PERMISSION_DENIED',
      `${field} ${JSON.stringify(id)} is reserved for the control plane's own audit chain`,
    );
}

function bounded(v: string, field: string, max: number): string {
  if (typeof v !== 'string' || v.length > max)
    throw invalid(field, `${field} must be at most ${max} characters`);
  return v;
}
