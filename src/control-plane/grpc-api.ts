/**
 * gRPC AdminService and DecisionService on the control plane: the same
 * AdminService methods as the REST routes, with errors mapped through status-map.
 */
import * as grpc from '@grpc/grpc-js';
import { ActError, invalid } from '../common/errors';
import { GRPC_STATUS } from '../common/status-map';
import {
  AdminServiceService,
  ApiKey,
  Role,
  type AdminServiceServer,
  type QueryAuditRequest,
} from '../gen/act/v1/admin';
import { ApprovalStatus } from '../gen/act/v1/decision';
import {
  Decision,
  ReasonCode,
  DecisionServiceService,
  type CheckPermissionResponse,
  type DecisionServiceServer,
} from '../gen/act/v1/decision';
import { parseCheckBatch, parseCheckRequest } from '../decision/request';
import type { Logger } from '../observability/logger';
import type { DecisionMetrics } from '../observability/metrics';
import type { AuditFilter, Store } from '../store/types';
import type { AdminService } from './admin-service';
import { authenticateCheck, requireRole, type Auth, type Principal } from './auth';
import type { CentralEnforcer } from './central';
import { checkMessage } from '../decision/wire';
import type { ApiKeyRecord, RoleName } from './records';
import { parseAuditFilter } from './http-api';
import { pageSize } from './validate';

export function toServiceError(err: unknown, logger: Logger): Partial<grpc.StatusObject> {
  if (err instanceof ActError) {
    const md = new grpc.Metadata();
    if (err.field) md.set('act-field', err.field);
    md.set('act-code', err.code);
    return {
      code: GRPC_STATUS[err.code],
      details: err.field ? `${err.message} (field: ${err.field})` : err.message,
      metadata: md,
    };
  }
  logger.error({ err }, 'rpc failed');
  return { code: grpc.status.INTERNAL, details: 'internal error' };
}

function bearer(md: grpc.Metadata): string | undefined {
  const v = md.get('authorization')[0];
  return typeof v === 'string' ? v : undefined;
}

export interface GrpcApiDeps {
  admin: AdminService;
  auth: Auth;
  central: CentralEnforcer;
  store: Store;
  logger: Logger;
  metrics: DecisionMetrics;
}

export function addAdminService(server: grpc.Server, deps: GrpcApiDeps): void {
  const { admin, auth, store, logger, metrics } = deps;

  function unary<Req, Res>(
    name: string,
    roles: RoleName[],
    fn: (req: Req, who: Principal) => Promise<Res>,
  ): grpc.handleUnaryCall<Req, Res> {
    return (call, cb) => {
      void (async () => {
        try {
          const who = await auth.authenticate(bearer(call.metadata));
          requireRole(who, ...roles);
          const res = await fn(call.request, who);
          metrics.grpcRequests.inc({ method: name, code: 'OK' });
          cb(null, res);
        } catch (err) {
          const e = toServiceError(err, logger);
          metrics.grpcRequests.inc({ method: name, code: grpc.status[e.code ?? 2] ?? 'UNKNOWN' });
          cb(e);
        }
      })();
    };
  }

  const json = (v: unknown) => v as Record<string, unknown>;

  const impl: AdminServiceServer = {
    createAgent: unary('CreateAgent', ['admin'], (r) => admin.createAgent(json(r))),
    getAgent: unary('GetAgent', ['admin'], (r) => admin.getAgent(r.agent_id)),
    listAgents: unary('ListAgents', ['admin'], (r) => admin.listAgents(json(r))),
    updateAgent: unary('UpdateAgent', ['admin'], (r) => {
      const body: Record<string, unknown> = {};
      if (r.description !== undefined) body.description = r.description;
      if (r.replace_metadata) body.metadata = r.metadata;
      return admin.updateAgent(r.agent_id, body);
    }),
    disableAgent: unary('DisableAgent', ['admin'], (r) => admin.setAgentStatus(r.agent_id, false)),
    enableAgent: unary('EnableAgent', ['admin'], (r) => admin.setAgentStatus(r.agent_id, true)),
    deleteAgent: unary('DeleteAgent', ['admin'], async (r) => {
      const d = await admin.deleteAgent(r.agent_id);
      return { id: d.id, deleted: d.deleted, revision: 0 };
    }),
    createPolicy: unary('CreatePolicy', ['admin'], (r) => admin.createPolicy(json(r))),
    getPolicy: unary('GetPolicy', ['admin'], (r) => admin.getPolicy(r.policy_id)),
    listPolicies: unary('ListPolicies', ['admin'], (r) => admin.listPolicies(json(r))),
    updatePolicy: unary('UpdatePolicy', ['admin'], (r) => {
      if (!r.policy) throw invalid('policy', 'policy is required');
      return admin.updatePolicy(r.policy_id, json(r.policy));
    }),
    deletePolicy: unary('DeletePolicy', ['admin'], async (r) => ({
      ...(await admin.deletePolicy(r.policy_id)),
      revision: 0,
    })),
    issueToken: unary('IssueToken', ['admin'], (r) => admin.issueToken(json(r))),
    getToken: unary('GetToken', ['admin'], (r) => admin.getToken(r.token_id)),
    listTokens: unary('ListTokens', ['admin'], (r) => admin.listTokens(json(r))),
    revokeToken: unary('RevokeToken', ['admin'], (r) => admin.revokeToken(r.token_id, { reason: r.reason })),
    attenuateToken: unary('AttenuateToken', ['admin'], (r) => admin.attenuateToken(r.token_id, json(r))),
    listApprovals: unary('ListApprovals', ['approver'], (r) =>
      admin.listApprovals({
        ...json(r),
        status: r.status === ApprovalStatus.APPROVAL_STATUS_UNSPECIFIED ? undefined : r.status,
      }),
    ),
    getApproval: unary('GetApproval', ['approver'], (r) => admin.getApproval(r.approval_id)),
    resolveApproval: unary('ResolveApproval', ['approver'], (r, who) =>
      admin.resolveApproval(r.approval_id, r.approve, { comment: r.comment }, who.name),
    ),
    queryAudit: unary('QueryAudit', ['auditor'], async (r) => {
      const page = await store.audit.query(auditFilterFromWire(r), r.cursor, pageSize(r.limit, 100, 1000));
      return { records: page.records, next_cursor: page.nextCursor };
    }),
    exportAudit: (call) => {
      void (async () => {
        try {
          const who = await auth.authenticate(bearer(call.metadata));
          requireRole(who, 'auditor');
          const filter = auditFilterFromWire(call.request.filter ?? ({} as QueryAuditRequest));
          for await (const rec of store.audit.export(filter)) {
            if (call.cancelled) return;
            if (!call.write(rec)) await new Promise((r) => call.once('drain', r));
          }
          call.end();
        } catch (err) {
          call.emit('error', toServiceError(err, logger));
        }
      })();
    },
    listSigningKeys: unary('ListSigningKeys', ['admin'], async () => {
      const { keys } = await admin.listSigningKeys();
      return { keys };
    }),
    rotateSigningKey: unary('RotateSigningKey', ['admin'], () => admin.rotateSigningKey()),
    createApiKey: unary('CreateApiKey', ['admin'], async (r) => {
      const role = roleName(r.role);
      const name = r.name.trim();
      if (name === '' || name.length > 200) throw invalid('name', 'name must be 1-200 characters');
      const { record, secret } = await auth.createKey(name, role, r.agent_ids);
      return { api_key: apiKeyMessage(record), secret };
    }),
    listApiKeys: unary('ListApiKeys', ['admin'], async () => {
      const rows = await store.read((rd) => rd.scan<ApiKeyRecord>('apikeys', { limit: 10_000 }));
      return { api_keys: rows.map((x) => apiKeyMessage(x.value)) };
    }),
    revokeApiKey: unary('RevokeApiKey', ['admin'], async (r, who) => {
      if (r.api_key_id === who.api_key_id)
        throw new ActError('FAILED_PRECONDITION', 'an API key cannot revoke itself', { field: 'api_key_id' });
      await store.write(async (w) => {
        if (!(await w.get('apikeys', r.api_key_id)))
          throw new ActError('NOT_FOUND', `API key ${JSON.stringify(r.api_key_id)} not found`, {
            field: 'api_key_id',
          });
        w.del('apikeys', r.api_key_id);
      });
      return { id: r.api_key_id, deleted: true, revision: 0 };
    }),
    listSidecars: unary('ListSidecars', ['admin'], () => {
      throw new ActError('INTERNAL', 'not yet');
    }),
    waitForPropagation: unary('WaitForPropagation', ['admin'], () => {
      throw new ActError('INTERNAL', 'not yet');
    }),
  };
  server.addService(AdminServiceService, impl);
}

/** DecisionService on the control plane (central enforcement). */
export function addDecisionService(server: grpc.Server, deps: GrpcApiDeps): void {
  const { auth, central, logger } = deps;
  const authorize = (md: grpc.Metadata, token: string) => authenticateCheck(auth, bearer(md), token);
  const impl: DecisionServiceServer = {
    checkPermission: (call, cb) => {
      void (async () => {
        try {
          await authorize(call.metadata, call.request.token);
          const input = parseCheckRequest(call.request as unknown as Record<string, unknown>);
          cb(null, checkMessage(input.action, await central.check(input)));
        } catch (err) {
          cb(toServiceError(err, logger));
        }
      })();
    },
    checkPermissions: (call, cb) => {
      void (async () => {
        try {
          await authorize(call.metadata, call.request.token);
          const inputs = parseCheckBatch(call.request.token, call.request.items);
          const results: CheckPermissionResponse[] = [];
          for (const input of inputs) results.push(checkMessage(input.action, await central.check(input)));
          cb(null, { results });
        } catch (err) {
          cb(toServiceError(err, logger));
        }
      })();
    },
    waitForApproval: (call) => call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not yet' }),
  };
  server.addService(DecisionServiceService, impl);
}

function auditFilterFromWire(r: QueryAuditRequest): AuditFilter {
  return parseAuditFilter({
    agent_id: r.agent_id,
    token_id: r.token_id,
    action: r.action,
    decision: r.decision ? String(decisionName(r.decision)) : undefined,
    reason_code: r.reason_code ? String(reasonName(r.reason_code)) : undefined,
    since: r.since,
    until: r.until,
  });
}

function decisionName(n: number): string {
  return Decision[n] ?? String(n);
}
function reasonName(n: number): string {
  return ReasonCode[n] ?? String(n);
}

function roleName(r: Role): RoleName {
  switch (r) {
    case Role.ADMIN:
      return 'admin';
    case Role.APPROVER:
      return 'approver';
    case Role.AUDITOR:
      return 'auditor';
    case Role.SIDECAR:
      return 'sidecar';
    default:
      throw invalid('role', 'role must be ADMIN, APPROVER, AUDITOR or SIDECAR');
  }
}

function apiKeyMessage(r: ApiKeyRecord): ApiKey {
  return ApiKey.fromPartial({
    api_key_id: r.api_key_id,
    name: r.name,
    role: Role[r.role.toUpperCase() as keyof typeof Role],
    created_at: new Date(r.created_at_ms).toISOString(),
    agent_ids: r.agent_ids ?? [],
  });
}
