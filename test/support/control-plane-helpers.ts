/**
 * Helpers for the control-plane integration tests: whole-store snapshots through
 * the REST API, paging, future RFC 3339 times and the seed's request bodies.
 */
import type { restClient } from './processes';

export type Rest = ReturnType<typeof restClient>;

/** The seed's four request bodies, verbatim (ids and expiry filled in by the tests). */
export const SEED = {
  agent: {
    name: 'Customer Support Agent',
    description: 'Handles tier-1 customer inquiries',
    metadata: {
      team: 'customer-success',
      environment: 'production',
    },
  },
  policy: {
    name: 'Customer Support Policy',
    capabilities: [
      'read:customer_profile',
      'read:order_history',
      'create:support_ticket',
      'update:ticket_status',
    ],
    constraints: {
      max_actions_per_day: 1000,
      allowed_hours: '09:00-17:00 UTC',
      rate_limit: '100 per minute',
    },
  },
  token: {
    agent_id: 'agent_12345',
    policy_ids: ['policy_support_01'],
    expires_at: '2025-12-31T23:59:59Z',
    metadata: {
      issued_by: '[email protected]',
      purpose: 'Q4 customer support operations',
    },
  },
  check: {
    token: 'act_1a2b3c4d5e6f...',
    action: 'read:customer_profile',
    resource: 'customer_54321',
    context: {
      ip: '10.0.1.50',
      reason: 'User inquiry about order status',
    },
  },
  deniedAction: 'delete:customer_account',
} as const;

/** An RFC 3339 time `days` days from now at 23:59:59Z, the form the seed uses. */
export function futureTime(days: number): string {
  const d = new Date(Date.now() + days * 86_400_000);
  return `${d.toISOString().slice(0, 10)}T23:59:59Z`;
}

/** Throws with the response text unless the status is the expected one. */
export function expectStatus(r: { status: number; text: string }, status: number, what: string): void {
  if (r.status !== status) throw new Error(`${what}: expected HTTP ${status}, got ${r.status}: ${r.text}`);
}

/** Pages a list route (`?limit=&cursor=`) to the end; returns every item under `key`. */
export async function pageAll(api: Rest, route: string, key: string, limit = 500): Promise<any[]> {
  const out: any[] = [];
  let cursor = '';
  for (;;) {
    const sep = route.includes('?') ? '&' : '?';
    const r = await api('GET', `${route}${sep}limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`);
    expectStatus(r, 200, `GET ${route}`);
    out.push(...(r.body[key] as any[]));
    cursor = r.body.next_cursor as string;
    if (!cursor) return out;
  }
}

/** Every audit record, as the NDJSON export returns them (oldest first). */
export async function exportNdjson(api: Rest, query = ''): Promise<any[]> {
  const r = await api('GET', `/api/audit/export?format=ndjson${query ? `&${query}` : ''}`);
  expectStatus(r, 200, 'GET /api/audit/export');
  return r.text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));
}

/** The whole observable state: agents, policies, tokens (including inactive), approvals, API keys, audit. */
export async function snapshot(api: Rest): Promise<Record<string, unknown>> {
  return {
    agents: await pageAll(api, '/api/agents', 'agents'),
    policies: await pageAll(api, '/api/policies', 'policies'),
    tokens: await pageAll(api, '/api/tokens?include_inactive=true', 'tokens'),
    approvals: await pageAll(api, '/api/approvals', 'approvals'),
    api_keys: (await api('GET', '/api/api-keys')).body.api_keys,
    audit: (await exportNdjson(api)).map((r) => r.audit_id),
  };
}
