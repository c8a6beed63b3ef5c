/**
 * The gRPC edge: AdminService and DecisionService on the control plane, adapters over the
 * route table (routes.ts) like the REST edge, errors through the one mapper. Every method of
 * both services must have a route (checked when the server is built).
 */
import * as grpc from '@grpc/grpc-js';
import { invalid } from '../common/errors';
import { undecodable, withGuardedRequest } from '../common/proto-encode';
import { toGrpcError } from '../common/status-map';
import { AdminServiceService, type AuditRecord, type ExportAuditRequest } from '../gen/act/v1/admin';
import {
  DecisionServiceService,
  type ApprovalUpdate,
  type WaitForApprovalRequest,
} from '../gen/act/v1/decision';
import { waitForApproval, waitTimeout, type ApprovalWatch } from '../enforce/approval-wait';
import type { Logger } from '../observability/logger';
import type { DecisionMetrics } from '../observability/metrics';
import { authorize, type Auth } from './auth';
import { ROUTES, accessOf, auditFilterFromWire, type Route, type Services } from './routes';
import { parseAuditQuery } from './services/audit';

export interface GrpcApiDeps {
  services: Services;
  auth: Auth;
  watch: ApprovalWatch;
  logger: Logger;
  metrics: DecisionMetrics;
}

function bearer(md: grpc.Metadata): string | undefined {
  const v = md.get('authorization')[0];
  return typeof v === 'string' ? v : undefined;
}

const lowerFirst = (s: string) => s[0]!.toLowerCase() + s.slice(1);

/**
 * The request, or INVALID_ARGUMENT when its bytes did not decode (e.g. a Struct nested beyond
 * the decoder's depth): the caller's error, not grpc-js's INTERNAL "Error deserializing request".
 */
function decoded<T>(request: T): T {
  const bad = undecodable(request);
  if (bad !== undefined) throw invalid('request', `the request could not be decoded: ${bad}`);
  return request;
}

/** A service definition whose request deserializers never throw (see withGuardedRequest). */
function guarded<S extends Record<string, { requestDeserialize: (b: Buffer) => unknown }>>(service: S): S {
  const out: Record<string, unknown> = {};
  for (const [name, method] of Object.entries(service)) out[name] = withGuardedRequest(method);
  return out as S;
}

export function addGrpcApi(server: grpc.Server, deps: GrpcApiDeps): void {
  const { services, auth, logger, metrics } = deps;

  const unary =
    (r: Route): grpc.handleUnaryCall<unknown, unknown> =>
    (call, cb) => {
      void (async () => {
        try {
          let input: unknown;
          let who;
          if (r.access === 'check') {
            // A decision may be authorized by the very token it checks, so read it first.
            input = r.grpc!(decoded(call.request));
            who = await authorize(auth, bearer(call.metadata), r.access, r.token?.(input));
          } else {
            // Nobody learns anything about a request before they are authenticated.
            who = await authorize(auth, bearer(call.metadata), r.access);
            input = r.grpc!(decoded(call.request));
          }
          const out = await r.run!(services, input, who);
          metrics.grpcRequests.inc({ method: r.rpc, code: 'OK' });
          cb(null, r.message!(out, input));
        } catch (err) {
          const e = toGrpcError(err, logger);
          metrics.grpcRequests.inc({ method: r.rpc, code: grpc.status[e.code ?? 2] ?? 'UNKNOWN' });
          cb(e);
        }
      })();
    };

  const streams: Record<string, grpc.handleServerStreamingCall<never, never>> = {
    exportAudit: (call: grpc.ServerWritableStream<ExportAuditRequest, AuditRecord>) => {
      void (async () => {
        try {
          await authorize(auth, bearer(call.metadata), accessOf('ExportAudit'));
          const { filter } = parseAuditQuery(
            auditFilterFromWire({ ...(decoded(call.request).filter ?? {}), cursor: '', limit: 0 }),
          );
          for await (const rec of services.audit.records(filter)) {
            if (call.cancelled) return;
            if (!call.write(rec)) await new Promise((r) => call.once('drain', r));
          }
          call.end();
        } catch (err) {
          call.emit('error', toGrpcError(err, logger));
        }
      })();
    },
    waitForApproval: (call: grpc.ServerWritableStream<WaitForApprovalRequest, ApprovalUpdate>) => {
      void (async () => {
        try {
          const token = decoded(call.request).token || undefined;
          // The agent's token proves it asked; without one, an approver key may watch.
          if (token === undefined) await authorize(auth, bearer(call.metadata), accessOf('WaitForApproval'));
          const abort = new AbortController();
          call.once('cancelled', () => abort.abort());
          for await (const u of waitForApproval(deps.watch, {
            approvalId: call.request.approval_id,
            token,
            timeoutMs: waitTimeout(call.request.timeout_ms),
            signal: abort.signal,
          })) {
            if (call.cancelled) return;
            call.write(u);
          }
          call.end();
        } catch (err) {
          call.emit('error', toGrpcError(err, logger));
        }
      })();
    },
  };

  for (const [name, definition] of [
    ['AdminService', AdminServiceService],
    ['DecisionService', DecisionServiceService],
  ] as const) {
    const impl: Record<string, unknown> = {};
    for (const method of Object.keys(definition)) {
      const r = ROUTES.find(
        (x) => x.service === name && lowerFirst(x.rpc) === method && (x.grpc || x.stream),
      );
      if (!r) throw new Error(`no route for ${name}.${method}`);
      impl[method] = r.stream ? streams[method] : unary(r);
      if (!impl[method]) throw new Error(`no gRPC stream handler for ${name}.${method}`);
    }
    server.addService(guarded(definition), impl as grpc.UntypedServiceImplementation);
  }
}
