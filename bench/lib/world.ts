/**
 * The seed's world for the end-to-end benches, created over REST on a running control plane:
 * the seed's agent, the seed's Customer Support Policy without allowed_hours (ALLOW at any
 * hour) and with limits no bench reaches, and a token. `CHECK` is the seed's check request.
 */
import { spawn } from 'node:child_process';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DecisionServiceClient, type CheckPermissionResponse } from '../../src/gen/act/v1/decision';
import { expectOk, waitFor, type Rest } from './procs';

export const CHECK = {
  action: 'read:customer_profile',
  resource: 'customer_54321',
  context: { ip: '10.0.1.50', reason: 'User inquiry about order status' },
};

export const BENCH_POLICY = {
  name: 'Customer Support Policy (bench)',
  capabilities: [
    'read:customer_profile',
    'read:order_history',
    'create:support_ticket',
    'update:ticket_status',
  ],
  constraints: { max_actions_per_day: 1_000_000_000, rate_limit: '1000000 per second' },
};

export interface World {
  agentId: string;
  policyId: string;
  token: string;
  tokenId: string;
}

/**
 * The seed's agent, BENCH_POLICY and a token. `budgets: false` drops the policy's rate limit and
 * daily maximum: those are leased from the control plane, so a sidecar cut off from it answers
 * BUDGET_UNAVAILABLE once its slices are spent (fail closed) — right for a bench of an outage
 * that measures something else.
 */
export async function createWorld(api: Rest, opts: { budgets?: boolean } = {}): Promise<World> {
  const agent = await expectOk(
    api('POST', '/api/agents', {
      name: 'Customer Support Agent',
      description: 'Handles tier-1 customer inquiries',
      metadata: { team: 'customer-success', environment: 'production' },
    }),
    201,
    'create agent',
  );
  const body = opts.budgets === false ? { ...BENCH_POLICY, constraints: {} } : BENCH_POLICY;
  const policy = await expectOk(api('POST', '/api/policies', body), 201, 'create policy');
  const token = await issue(api, agent.agent_id, policy.policy_id);
  return { agentId: agent.agent_id, policyId: policy.policy_id, ...token };
}

export async function issue(
  api: Rest,
  agentId: string,
  policyId: string,
): Promise<{ token: string; tokenId: string }> {
  const t = await expectOk(
    api('POST', '/api/tokens', {
      agent_id: agentId,
      policy_ids: [policyId],
      expires_at: new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 19) + 'Z',
      metadata: { issued_by: 'bench@example.com', purpose: 'benchmark' },
    }),
    201,
    'issue token',
  );
  return { token: t.token, tokenId: t.token_id };
}

/** One gRPC CheckPermission from this process (setup and polling only, never timed). */
export function checkOnce(
  target: string,
  token: string,
  timeoutMs = 5_000,
): Promise<CheckPermissionResponse> {
  const client = new DecisionServiceClient(target, grpc.credentials.createInsecure(), {
    'grpc.initial_reconnect_backoff_ms': 5,
    'grpc.max_reconnect_backoff_ms': 20,
  });
  return new Promise<CheckPermissionResponse>((resolve, reject) =>
    client.checkPermission(
      { token, ...CHECK, approval_id: '' },
      new grpc.Metadata({ waitForReady: true }),
      { deadline: Date.now() + timeoutMs },
      (err, res) => (err ? reject(err) : resolve(res)),
    ),
  ).finally(() => client.close());
}

/** Polls until `target` answers ALLOW for `token`; returns that answer. */
export function waitAllow(
  target: string,
  token: string,
  timeoutMs = 30_000,
): Promise<CheckPermissionResponse> {
  return waitFor(
    `ALLOW from ${target}`,
    async () => {
      const r = await checkOnce(target, token);
      return r.allowed ? r : undefined;
    },
    { timeoutMs, intervalMs: 50 },
  );
}

/**
 * Writes `n` agents straight into the LMDB store in `dataDir` (before its control plane starts),
 * with the store module of the build in `dist`, so each build seeds its own format. A sidecar
 * serving every agent then holds them in its replica: the bench's "100k replica entries".
 * One transaction per 5,000 (through the API it would be one commit each).
 */
export async function seedAgents(dist: string, dataDir: string, n: number): Promise<void> {
  const script = `
    const { openLmdbStore } = require(${JSON.stringify(path.join(dist, 'store/index.js'))});
    const A = '0123456789abcdefghjkmnpqrstvwxyz';
    const id = (i) => { let s = ''; for (let k = 0; k < 26; k++) { s = A[i % 32] + s; i = Math.floor(i / 32); } return 'agent_' + s; };
    (async () => {
      const store = await openLmdbStore({ dataDir: ${JSON.stringify(dataDir)} });
      const at = new Date().toISOString();
      for (let i = 0; i < ${n}; i += 5000) {
        await store.write(async (w) => {
          for (let j = i; j < Math.min(${n}, i + 5000); j++)
            w.put('agents', id(j), { agent_id: id(j), name: 'seeded agent ' + j, description: 'bench replica entry',
              metadata: { team: 'bench' }, status: 1, created_at: at, updated_at: at });
        });
      }
      await store.close();
    })().catch((e) => { console.error(e); process.exit(1); });`;
  const nodePath = [process.env.NODE_PATH, path.join(__dirname, '../../node_modules')]
    .filter(Boolean)
    .join(':');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', script], {
      env: { ...process.env, NODE_PATH: nodePath },
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`seeding agents failed (exit ${code})`)),
    );
  });
}
