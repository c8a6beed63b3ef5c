/**
 * The control plane's one route table: each operation once — its gRPC method, its REST method,
 * path and status, who may call it, how the REST request and the gRPC message become the
 * service's typed input, and how the result becomes JSON and a message. The REST edge
 * (http-api.ts) and the gRPC edge (grpc-api.ts) are adapters over this table; a role or a route
 * is written here only. Streaming operations are listed too (roles, paths) and served by the
 * edges' stream handlers.
 */
import type { HTTPMethod } from 'find-my-way';
import { ActError, invalid } from '../common/errors';
import { parseCheckBatch, parseCheckRequest, type CheckInput } from '../decision/request';
import { checkJson, checkMessage, type CheckOutcome } from '../decision/wire';
import type { Enforcer } from '../enforce';
import type { Propagation } from '../gen/act/v1/admin';
import { Decision, ReasonCode } from '../gen/act/v1/decision';
import type { Access, Principal } from './auth';
import type { ApprovalService } from './approvals';
import {
  agentJson,
  apiKeyJson,
  approvalJson,
  auditJson,
  issuedTokenJson,
  policyJson,
  propagationJson,
  sidecarJson,
  tokenJson,
} from './json-mapping';
import { parseCreateAgent, parseListAgents, parseUpdateAgent, type AgentService } from './services/agents';
import { parseCreateApiKey, type ApiKeyService } from './services/api-keys';
import { parseAuditQuery, type AuditService } from './services/audit';
import type { KeyService } from './services/keys';
import { parseListPolicies, parsePolicyInput, type PolicyService } from './services/policies';
import type { SidecarRegistry } from './services/sidecars';
import { parseAttenuate, parseIssueToken, parseListTokens, type TokenService } from './services/tokens';
import { optionalBool, optionalString, parseWait } from './validate';

type Json = Record<string, unknown>;

export interface Services {
  agents: AgentService;
  policies: PolicyService;
  tokens: TokenService;
  approvals: ApprovalService;
  keys: KeyService;
  apiKeys: ApiKeyService;
  audit: AuditService;
  sidecars: SidecarRegistry;
  central: Enforcer;
}

/** A REST request as the table sees it. */
export interface RestRequest {
  params: Record<string, string | undefined>;
  query: Json;
  body: Json;
}

export type { Access };

export interface Route<In = unknown, Out = unknown> {
  service: 'AdminService' | 'DecisionService';
  /** The gRPC method name. */
  rpc: string;
  http?: { method: HTTPMethod; path: string; status?: number; body?: 'json' | 'optional' | 'none' };
  access: Access;
  /** `check` access: the token presented in the request. */
  token?: (input: In) => unknown;
  rest?: (r: RestRequest) => In;
  /** The typed input from a gRPC request message (each route knows its message type). */
  grpc?: (msg: any) => In;
  run?: (s: Services, input: In, who: Principal | undefined) => Promise<Out>;
  json?: (out: Out, input: In) => unknown;
  message?: (out: Out, input: In) => unknown;
  /** Served by the edges' stream handlers (export, follow, waits). */
  stream?: true;
}

function route<In, Out>(r: Route<In, Out>): Route {
  return r as unknown as Route;
}

const id = (r: RestRequest) => r.params.id;

/** gRPC messages carry enums as numbers; the services parse names. */
export function auditFilterFromWire(m: Json): Json {
  return {
    agent_id: m.agent_id,
    token_id: m.token_id,
    action: m.action,
    decision: m.decision ? Decision[m.decision as number] : undefined,
    reason_code: m.reason_code ? ReasonCode[m.reason_code as number] : undefined,
    since: m.since,
    until: m.until,
    cursor: m.cursor,
    limit: m.limit,
  };
}

async function checkAll(central: Enforcer, inputs: CheckInput[]): Promise<CheckOutcome[]> {
  const out: CheckOutcome[] = [];
  for (const i of inputs) out.push(await central.check(i));
  return out;
}

export const ROUTES: Route[] = [
  // ---- agents ----
  route({
    service: 'AdminService',
    rpc: 'CreateAgent',
    http: { method: 'POST', path: '/api/agents', status: 201 },
    access: ['admin'],
    rest: (r) => parseCreateAgent(r.body),
    grpc: (m) => parseCreateAgent(m),
    run: (s, i) => s.agents.create(i),
    json: agentJson,
    message: (a) => a,
  }),
  route({
    service: 'AdminService',
    rpc: 'ListAgents',
    http: { method: 'GET', path: '/api/agents' },
    access: ['admin'],
    rest: (r) => parseListAgents(r.query),
    grpc: (m) => parseListAgents(m),
    run: (s, i) => s.agents.list(i),
    json: (p) => ({ agents: p.items.map(agentJson), next_cursor: p.next_cursor }),
    message: (p) => ({ agents: p.items, next_cursor: p.next_cursor }),
  }),
  route({
    service: 'AdminService',
    rpc: 'GetAgent',
    http: { method: 'GET', path: '/api/agents/:id' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.agent_id,
    run: (s, i) => s.agents.get(i),
    json: agentJson,
    message: (a) => a,
  }),
  route({
    service: 'AdminService',
    rpc: 'UpdateAgent',
    http: { method: 'PATCH', path: '/api/agents/:id' },
    access: ['admin'],
    rest: (r) => parseUpdateAgent(r.params.id, r.body),
    grpc: (m) =>
      parseUpdateAgent(m.agent_id, {
        ...(m.description !== undefined ? { description: m.description } : {}),
        ...(m.replace_metadata ? { metadata: m.metadata } : {}),
      }),
    run: (s, i) => s.agents.update(i),
    json: agentJson,
    message: (a) => a,
  }),
  route({
    service: 'AdminService',
    rpc: 'DisableAgent',
    http: { method: 'POST', path: '/api/agents/:id/disable', body: 'none' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.agent_id,
    run: (s, i) => s.agents.setStatus(i, false),
    json: agentJson,
    message: (a) => a,
  }),
  route({
    service: 'AdminService',
    rpc: 'EnableAgent',
    http: { method: 'POST', path: '/api/agents/:id/enable', body: 'none' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.agent_id,
    run: (s, i) => s.agents.setStatus(i, true),
    json: agentJson,
    message: (a) => a,
  }),
  route({
    service: 'AdminService',
    rpc: 'DeleteAgent',
    http: { method: 'DELETE', path: '/api/agents/:id' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.agent_id,
    run: (s, i) => s.agents.delete(i),
    json: (d) => d,
    message: (d) => ({ id: d.id, deleted: d.deleted, revision: d.revision }),
  }),

  // ---- policies ----
  route({
    service: 'AdminService',
    rpc: 'CreatePolicy',
    http: { method: 'POST', path: '/api/policies', status: 201 },
    access: ['admin'],
    rest: (r) => parsePolicyInput(r.body),
    grpc: (m) => parsePolicyInput(m),
    run: (s, i) => s.policies.create(i),
    json: policyJson,
    message: (p) => p,
  }),
  route({
    service: 'AdminService',
    rpc: 'ListPolicies',
    http: { method: 'GET', path: '/api/policies' },
    access: ['admin'],
    rest: (r) => parseListPolicies(r.query),
    grpc: (m) => parseListPolicies(m),
    run: (s, i) => s.policies.list(i),
    json: (p) => ({ policies: p.items.map(policyJson), next_cursor: p.next_cursor }),
    message: (p) => ({ policies: p.items, next_cursor: p.next_cursor }),
  }),
  route({
    service: 'AdminService',
    rpc: 'GetPolicy',
    http: { method: 'GET', path: '/api/policies/:id' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.policy_id,
    run: (s, i) => s.policies.get(i),
    json: policyJson,
    message: (p) => p,
  }),
  route({
    service: 'AdminService',
    rpc: 'UpdatePolicy',
    http: { method: 'PUT', path: '/api/policies/:id' },
    access: ['admin'],
    rest: (r) => ({
      id: r.params.id,
      input: parsePolicyInput(r.body, ['policy_id']),
      waitMs: parseWait(r.query.wait, 'wait'),
    }),
    grpc: (m) => {
      if (!m.policy) throw invalid('policy', 'policy is required');
      return { id: m.policy_id, input: parsePolicyInput(m.policy), waitMs: parseWait(m.wait_ms, 'wait_ms') };
    },
    run: async (s, i) => {
      const { policy, revision } = await s.policies.update(i.id, i.input);
      if (i.waitMs > 0)
        policy.propagation = await s.sidecars.waitFor(revision, { policyId: policy.policy_id }, i.waitMs);
      return policy;
    },
    json: policyJson,
    message: (p) => p,
  }),
  route({
    service: 'AdminService',
    rpc: 'DeletePolicy',
    http: { method: 'DELETE', path: '/api/policies/:id' },
    access: ['admin'],
    rest: (r) => ({ id: r.params.id, waitMs: parseWait(r.query.wait, 'wait') }),
    grpc: (m) => ({ id: m.policy_id, waitMs: 0 }),
    run: async (s, i) => {
      const d = await s.policies.delete(i.id);
      return i.waitMs > 0
        ? { ...d, propagation: await s.sidecars.waitFor(d.revision, { policyId: d.id }, i.waitMs) }
        : d;
    },
    json: (d) => ('propagation' in d ? { ...d, propagation: propagationJson(d.propagation) } : d),
    message: (d) => ({ id: d.id, deleted: d.deleted, revision: d.revision }),
  }),

  // ---- tokens ----
  route({
    service: 'AdminService',
    rpc: 'IssueToken',
    http: { method: 'POST', path: '/api/tokens', status: 201 },
    access: ['admin'],
    rest: (r) => parseIssueToken(r.body),
    grpc: (m) => parseIssueToken(m),
    run: (s, i) => s.tokens.issue(i),
    json: issuedTokenJson,
    message: (t) => t,
  }),
  route({
    service: 'AdminService',
    rpc: 'ListTokens',
    http: { method: 'GET', path: '/api/tokens' },
    access: ['admin'],
    rest: (r) => parseListTokens(r.query),
    grpc: (m) => parseListTokens(m),
    run: (s, i) => s.tokens.list(i),
    json: (p) => ({ tokens: p.items.map(tokenJson), next_cursor: p.next_cursor }),
    message: (p) => ({ tokens: p.items, next_cursor: p.next_cursor }),
  }),
  route({
    service: 'AdminService',
    rpc: 'GetToken',
    http: { method: 'GET', path: '/api/tokens/:id' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.token_id,
    run: (s, i) => s.tokens.get(i),
    json: tokenJson,
    message: (t) => t,
  }),
  route({
    service: 'AdminService',
    rpc: 'RevokeToken',
    http: { method: 'POST', path: '/api/tokens/:id/revoke', body: 'optional' },
    access: ['admin'],
    rest: (r) => {
      if (Object.keys(r.body).some((k) => k !== 'reason'))
        throw invalid('body', 'the only field is "reason"');
      return { id: r.params.id, reason: r.body.reason, waitMs: parseWait(r.query.wait, 'wait') };
    },
    grpc: (m) => ({ id: m.token_id, reason: m.reason, waitMs: parseWait(m.wait_ms, 'wait_ms') }),
    run: async (s, i) => {
      const r = await s.tokens.revoke(i.id, i.reason);
      const out: { revoked_token_ids: string[]; revision: number; propagation?: Propagation } = {
        revoked_token_ids: r.revoked_token_ids,
        revision: r.revision,
      };
      if (i.waitMs > 0)
        out.propagation = await s.sidecars.waitFor(r.revision, { agentId: r.agent_id }, i.waitMs);
      return out;
    },
    json: (o) => o,
    message: (o) => o,
  }),
  route({
    service: 'AdminService',
    rpc: 'AttenuateToken',
    http: { method: 'POST', path: '/api/tokens/:id/attenuate', status: 201 },
    access: ['admin'],
    rest: (r) => parseAttenuate(r.params.id, r.body),
    grpc: (m) => {
      const { token_id: tokenId, ...body } = m;
      return parseAttenuate(tokenId, body);
    },
    run: (s, i) => s.tokens.attenuate(i),
    json: issuedTokenJson,
    message: (t) => t,
  }),

  // ---- approvals ----
  route({
    service: 'AdminService',
    rpc: 'ListApprovals',
    http: { method: 'GET', path: '/api/approvals' },
    access: ['approver'],
    rest: (r) => r.query,
    grpc: (m) => m,
    run: (s, i) => s.approvals.list(i),
    json: (p) => ({ approvals: p.items.map(approvalJson), next_cursor: p.next_cursor }),
    message: (p) => ({ approvals: p.items, next_cursor: p.next_cursor }),
  }),
  route({
    service: 'AdminService',
    rpc: 'GetApproval',
    http: { method: 'GET', path: '/api/approvals/:id' },
    access: ['approver'],
    rest: id,
    grpc: (m) => m.approval_id,
    run: (s, i) => s.approvals.get(i),
    json: approvalJson,
    message: (a) => a,
  }),
  ...(['approve', 'deny'] as const).map((verb) =>
    route({
      service: 'AdminService',
      rpc: 'ResolveApproval',
      http: { method: 'POST', path: `/api/approvals/:id/${verb}`, body: 'optional' },
      access: ['approver'],
      rest: (r) => {
        if (Object.keys(r.body).some((k) => k !== 'comment'))
          throw invalid('body', 'the only field is "comment"');
        return { id: r.params.id, approve: verb === 'approve', comment: r.body.comment };
      },
      // The gRPC method is one for both verbs: the table lists it once (for approve).
      ...(verb === 'approve'
        ? { grpc: (m: Json) => ({ id: m.approval_id, approve: m.approve === true, comment: m.comment }) }
        : {}),
      run: (s, i, who) => s.approvals.resolve(i.id, i.approve, i.comment, who?.name ?? ''),
      json: approvalJson,
      message: (a) => a,
    }),
  ),
  route({
    service: 'DecisionService',
    rpc: 'WaitForApproval',
    http: { method: 'GET', path: '/api/approvals/:id/wait' },
    access: ['approver'], // or the ACT token that asked (checked by the stream handler)
    stream: true,
  }),

  // ---- audit ----
  route({
    service: 'AdminService',
    rpc: 'QueryAudit',
    http: { method: 'GET', path: '/api/audit' },
    access: ['auditor'],
    rest: (r) => parseAuditQuery(r.query),
    grpc: (m) => parseAuditQuery(auditFilterFromWire(m)),
    run: (s, i) => s.audit.query(i),
    json: (p) => ({ records: p.records.map(auditJson), next_cursor: p.nextCursor }),
    message: (p) => ({ records: p.records, next_cursor: p.nextCursor }),
  }),
  route({
    service: 'AdminService',
    rpc: 'ExportAudit',
    http: { method: 'GET', path: '/api/audit/export' },
    access: ['auditor'],
    stream: true,
  }),
  route({
    service: 'AdminService',
    rpc: 'FollowAudit', // REST only
    http: { method: 'GET', path: '/api/audit/follow' },
    access: ['auditor'],
    stream: true,
  }),

  // ---- signing keys ----
  route({
    service: 'AdminService',
    rpc: 'ListSigningKeys',
    http: { method: 'GET', path: '/api/keys' },
    access: ['admin'],
    rest: () => undefined,
    grpc: () => undefined,
    run: async (s) => ({ keys: await s.keys.list() }),
    json: (o) => o,
    message: (o) => o,
  }),
  route({
    service: 'AdminService',
    rpc: 'RotateSigningKey',
    http: { method: 'POST', path: '/api/keys/rotate', status: 201, body: 'none' },
    access: ['admin'],
    rest: () => undefined,
    grpc: () => undefined,
    run: (s) => s.keys.rotate(),
    json: (k) => k,
    message: (k) => k,
  }),

  // ---- API keys ----
  route({
    service: 'AdminService',
    rpc: 'CreateApiKey',
    http: { method: 'POST', path: '/api/api-keys', status: 201 },
    access: ['admin'],
    rest: (r) => parseCreateApiKey(r.body),
    grpc: (m) => parseCreateApiKey({ name: m.name, role: m.role, agent_ids: m.agent_ids }),
    run: (s, i) => s.apiKeys.create(i),
    json: (o) => ({ api_key: apiKeyJson(o.api_key), secret: o.secret }),
    message: (o) => o,
  }),
  route({
    service: 'AdminService',
    rpc: 'ListApiKeys',
    http: { method: 'GET', path: '/api/api-keys' },
    access: ['admin'],
    rest: () => undefined,
    grpc: () => undefined,
    run: async (s) => s.apiKeys.list(),
    json: (keys) => ({ api_keys: keys.map(apiKeyJson) }),
    message: (keys) => ({ api_keys: keys }),
  }),
  route({
    service: 'AdminService',
    rpc: 'RevokeApiKey',
    http: { method: 'DELETE', path: '/api/api-keys/:id' },
    access: ['admin'],
    rest: id,
    grpc: (m) => m.api_key_id,
    run: (s, i, who) => s.apiKeys.revoke(i, who!),
    json: (d) => ({ id: d.id, deleted: d.deleted }),
    message: (d) => d,
  }),

  // ---- sidecars ----
  route({
    service: 'AdminService',
    rpc: 'ListSidecars',
    http: { method: 'GET', path: '/api/sidecars' },
    access: ['admin'],
    rest: (r) => optionalBool(r.query.include_disconnected, 'include_disconnected'),
    grpc: (m) => m.include_disconnected === true,
    run: (s, i) => s.sidecars.list(i),
    json: (o) => ({ sidecars: o.sidecars.map(sidecarJson), revision: o.revision }),
    message: (o) => o,
  }),
  route({
    service: 'AdminService',
    rpc: 'WaitForPropagation',
    http: { method: 'GET', path: '/api/sidecars/propagation' },
    access: ['admin'],
    rest: (r) => parsePropagation(r.query.revision, r.query.agent_id, parseWait(r.query.wait, 'wait')),
    grpc: (m) => parsePropagation(m.revision, m.agent_id, parseWait(m.wait_ms, 'wait_ms')),
    run: (s, i) => s.sidecars.waitFor(i.revision, i.agentId ? { agentId: i.agentId } : {}, i.waitMs),
    json: propagationJson,
    message: (p) => p,
  }),

  // ---- central enforcement ----
  route<CheckInput, CheckOutcome>({
    service: 'DecisionService',
    rpc: 'CheckPermission',
    http: { method: 'POST', path: '/api/enforcement/check' },
    access: 'check',
    token: (i) => i.token,
    rest: (r) => parseCheckRequest(r.body),
    grpc: (m) => parseCheckRequest(m),
    run: (s, i) => s.central.check(i),
    json: (o, i) => checkJson(i.action, o),
    message: (o, i) => checkMessage(i.action, o),
  }),
  route<CheckInput[], CheckOutcome[]>({
    service: 'DecisionService',
    rpc: 'CheckPermissions',
    http: { method: 'POST', path: '/api/enforcement/check-batch' },
    access: 'check',
    token: (i) => i[0]?.token,
    rest: (r) => parseCheckBatch(r.body.token, r.body.items),
    grpc: (m) => parseCheckBatch(m.token, m.items),
    run: (s, i) => checkAll(s.central, i),
    json: (o, i) => ({ results: o.map((x, n) => checkJson(i[n]!.action, x)) }),
    message: (o, i) => ({ results: o.map((x, n) => checkMessage(i[n]!.action, x)) }),
  }),
];

function parsePropagation(revision: unknown, agentId: unknown, waitMs: number) {
  const rev = typeof revision === 'string' ? Number(revision) : revision;
  if (typeof rev !== 'number' || !Number.isSafeInteger(rev) || rev < 1)
    throw invalid('revision', 'revision must be a positive integer (from a write\u2019s answer)');
  return { revision: rev, agentId: optionalString(agentId, 'agent_id', 80) || undefined, waitMs };
}

/** Roles of a route by gRPC method (streams included), for the edges' own handlers. */
export function accessOf(rpc: string): Access {
  const r = ROUTES.find((x) => x.rpc === rpc);
  if (!r) throw new ActError('INTERNAL', `no route ${rpc}`);
  return r.access;
}
