/**
 * Helpers for the sidecar integration tests: a fixture that owns every process,
 * client and temp dir a suite starts (and stops them in `after`), checks at a
 * sidecar over REST and gRPC, polling, metrics, audit look-ups at the control
 * plane, and a free TCP port for a control plane that must come back on the same
 * gRPC address.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import {
  DecisionServiceClient,
  type CheckPermissionRequest,
  type CheckPermissionResponse,
} from '../../src/gen/act/v1/decision';
import { exportNdjson, futureTime, SEED, type Rest } from './control-plane-helpers';
import {
  restClient,
  startControlPlane,
  startSidecar,
  tempDir,
  type ControlPlaneProcess,
  type SidecarProcess,
  type Spawned,
} from './processes';

/** A TCP port that was free a moment ago (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** `n` distinct TCP ports free a moment ago (held open together, so no two are the same). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls `fn` until it returns something other than undefined; throws after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 50 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline)
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`,
      );
    await sleep(intervalMs);
  }
}

/** One gauge or counter value from a Prometheus text page (first sample of that name). */
export async function metric(url: string, name: string): Promise<number | undefined> {
  const res = await fetch(`${url}/metrics`);
  const text = await res.text();
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [key, value] = line.split(' ');
    if (key === name || key?.startsWith(`${name}{`)) return Number(value);
  }
  return undefined;
}

/** Waits until the sidecar's spool holds nothing unacknowledged. */
export async function waitSpoolDrained(sc: { url: string }, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    'act_audit_spool_depth 0',
    async () => ((await metric(sc.url, 'act_audit_spool_depth')) === 0 ? true : undefined),
    { timeoutMs, intervalMs: 100 },
  );
}

/** Waits until the sidecar serves the control plane's current revision. */
export async function waitSynced(
  cp: { url: string },
  sc: { url: string },
  timeoutMs = 30_000,
): Promise<number> {
  const want = await metric(cp.url, 'act_revision');
  assert.ok(want !== undefined, 'control plane exports act_revision');
  return waitFor(
    `sidecar at revision ${want}`,
    async () => {
      const r = await metric(sc.url, 'act_replica_revision');
      return r !== undefined && r >= want ? r : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/** A unary gRPC CheckPermission as a promise. */
export function grpcCheck(
  client: DecisionServiceClient,
  req: Partial<CheckPermissionRequest> & { token: string; action: string },
): Promise<CheckPermissionResponse> {
  return new Promise((resolve, reject) =>
    client.checkPermission(
      { resource: '', context: undefined, approval_id: '', ...req },
      new grpc.Metadata(),
      { deadline: Date.now() + 10_000 },
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  );
}

/** A REST check at a sidecar (no authorization: the sidecar's API is loopback-only). */
export async function restCheck(
  sc: { url: string },
  body: Record<string, unknown>,
): Promise<{ status: number; body: any; text: string }> {
  return restClient(sc.url)('POST', '/api/enforcement/check', body);
}

/** Every record the control plane holds for these audit ids, by id (a list per id, to see duplicates). */
export async function auditByIds(api: Rest, query = ''): Promise<Map<string, any[]>> {
  const out = new Map<string, any[]>();
  for (const r of await exportNdjson(api, query)) {
    const list = out.get(r.audit_id) ?? [];
    list.push(r);
    out.set(r.audit_id, list);
  }
  return out;
}

/** Waits until the control plane holds the record of `auditId` (it arrives when the sidecar ships it). */
export async function waitAudit(api: Rest, auditId: string, query = ''): Promise<any> {
  return waitFor(`audit record ${auditId} at the control plane`, async () =>
    (await exportNdjson(api, query)).find((r) => r.audit_id === auditId),
  );
}

/** Median and p99 (nearest rank) of a list of numbers. */
export function percentiles(xs: number[]): { median: number; p99: number; max: number; min: number } {
  const s = [...xs].sort((a, b) => a - b);
  const rank = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]!;
  return { median: rank(0.5), p99: rank(0.99), max: s[s.length - 1]!, min: s[0]! };
}

/**
 * Owns what a suite starts: processes, gRPC clients, temp dirs; records every
 * token handed out so a test can prove none reaches a log line.
 */
export class SidecarFixture {
  readonly procs: Spawned[] = [];
  readonly clients: grpc.Client[] = [];
  readonly dirs: { dir: string; remove(): void }[] = [];
  readonly secrets: string[] = [];
  private readonly sidecars = new Set<Spawned>();

  dir(prefix: string): string {
    const d = tempDir(prefix);
    this.dirs.push(d);
    return d.dir;
  }

  async controlPlane(
    dataDir: string,
    env: Record<string, string> = {},
    args: string[] = [],
  ): Promise<ControlPlaneProcess> {
    const p = await startControlPlane(dataDir, env, args);
    this.procs.push(p);
    return p;
  }

  async sidecar(
    cp: { grpcPort: number; adminKey: string },
    dataDir: string,
    opts: Parameters<typeof startSidecar>[2] = {},
  ): Promise<SidecarProcess> {
    const p = await startSidecar(cp, dataDir, opts);
    this.procs.push(p);
    this.sidecars.add(p);
    return p;
  }

  /** A DecisionService client for `target` ("127.0.0.1:port" or "unix:/path"), closed in `after`. */
  decisionClient(target: string): DecisionServiceClient {
    const c = new DecisionServiceClient(target, grpc.credentials.createInsecure());
    this.clients.push(c);
    return c;
  }

  track<T extends grpc.Client>(c: T): T {
    this.clients.push(c);
    return c;
  }

  async teardown(): Promise<void> {
    for (const c of this.clients) c.close();
    // SIGTERM first (a clean stop); SIGKILL whatever has not exited after 15 s. Newest first, and
    // every sidecar before any control plane (one may have been restarted after the sidecars
    // started): sidecars stop while their control plane still acks, so their drain ends at once.
    const newest = [...this.procs].reverse();
    const order = [
      ...newest.filter((p) => this.sidecars.has(p)),
      ...newest.filter((p) => !this.sidecars.has(p)),
    ];
    for (const p of order) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (timer = setTimeout(() => r('late'), 15_000)));
      if ((await Promise.race([p.stop(), late])) === 'late') await p.kill();
      clearTimeout(timer);
    }
    for (const d of this.dirs) d.remove();
  }

  /** Asserts no line of any process's output contains a token (or an admin key). */
  assertNoSecretsInLogs(adminKey: string): void {
    assert.ok(this.secrets.length > 0);
    for (const p of this.procs) {
      assert.ok(p.output.length > 0);
      for (const line of p.output) {
        assert.equal(line.includes(adminKey), false, `admin key in: ${line.slice(0, 200)}`);
        for (const s of this.secrets)
          assert.equal(line.includes(s), false, `token in: ${line.slice(0, 200)}`);
        assert.equal(/act_[A-Za-z0-9_-]{40,}\.[A-Za-z0-9_-]{20,}/.test(line), false, line.slice(0, 200));
      }
    }
  }

  // ---- control-plane calls that assert their status ----

  async createAgent(api: Rest, body: Record<string, unknown>): Promise<any> {
    const r = await api('POST', '/api/agents', body);
    assert.equal(r.status, 201, r.text);
    return r.body;
  }

  async createPolicy(api: Rest, body: Record<string, unknown>): Promise<any> {
    const r = await api('POST', '/api/policies', body);
    assert.equal(r.status, 201, r.text);
    return r.body;
  }

  async issue(
    api: Rest,
    agentId: string,
    policyIds: string[],
    extra: Record<string, unknown> = {},
  ): Promise<any> {
    const r = await api('POST', '/api/tokens', {
      agent_id: agentId,
      policy_ids: policyIds,
      expires_at: futureTime(30),
      ...extra,
    });
    assert.equal(r.status, 201, r.text);
    this.secrets.push(r.body.token);
    return r.body;
  }

  async revoke(api: Rest, tokenId: string): Promise<void> {
    const r = await api('POST', `/api/tokens/${tokenId}/revoke`, { reason: 'test' });
    assert.equal(r.status, 200, r.text);
  }

  /** An agent with a token on a fresh policy that grants `capabilities` without constraints. */
  async agentWithToken(
    api: Rest,
    name: string,
    capabilities: string[] = ['read:customer_profile', 'create:support_ticket'],
  ): Promise<{ agentId: string; policyId: string; token: string; tokenId: string }> {
    const agent = await this.createAgent(api, { name });
    const policy = await this.createPolicy(api, { name: `${name} policy`, capabilities });
    const tok = await this.issue(api, agent.agent_id, [policy.policy_id]);
    return { agentId: agent.agent_id, policyId: policy.policy_id, token: tok.token, tokenId: tok.token_id };
  }
}

/** The seed's policy without allowed_hours (deterministic at any hour). */
export function anyHourSeedPolicy(name = 'Customer Support Policy (any hour)'): Record<string, unknown> {
  const { allowed_hours: _drop, ...constraints } = SEED.policy.constraints;
  return { ...SEED.policy, name, constraints };
}

/** The seed policy's expected outcome at the audit record's time (09:00-17:00 UTC). */
export function seedHoursExpectation(auditTime: string): { allowed: boolean; reasonCode: string } {
  const hour = new Date(auditTime).getUTCHours();
  const inHours = hour >= 9 && hour < 17;
  return { allowed: inHours, reasonCode: inHours ? 'GRANTED' : 'OUTSIDE_ALLOWED_HOURS' };
}

export { restClient };
