/**
 * The transport floor: a grpc-js server implementing DecisionService.CheckPermission that
 * decodes the request (as the sidecar does) and answers a fixed CheckPermissionResponse —
 * by default one captured from a real sidecar ALLOW, so both carry the same bytes. Listens on
 * 127.0.0.1:0 and a unix socket; prints {"type":"listening","port":N,"unix":"unix:/…","metrics":"http://…"}.
 * `/metrics` on another port carries prom-client's default metrics, so its event-loop delay is
 * read exactly as the sidecar's is.
 *
 *   node --import tsx bench/lib/echo-server.ts '{"socket":"/tmp/x/echo.sock","response":{…}}'
 */
import { rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { collectDefaultMetrics, Registry } from 'prom-client';
import {
  Decision,
  DecisionServiceService,
  ReasonCode,
  type CheckPermissionResponse,
  type DecisionServiceServer,
} from '../../src/gen/act/v1/decision';
import { exitWithParent, helperArgs } from './procs';

/** A realistic ALLOW answer, used when no captured response is given. */
export const SAMPLE_ALLOW: CheckPermissionResponse = {
  allowed: true,
  action: 'read:customer_profile',
  decision: Decision.ALLOW,
  reason_code: ReasonCode.GRANTED,
  reason: 'Token valid, capability granted',
  audit_id: 'audit_01jq8k6z4y0000000000000000',
  approval_id: '',
  details: {
    missing_capability: '',
    retry_after_ms: 0,
    next_allowed_at: '',
    remaining_daily_budget: 999_999_999,
    policy_id: 'policy_01jq8k6z4y00000000000000',
    rule: '',
    remaining_rate: 999_999,
    presented_approval_id: '',
  },
  policy_revision: 5,
};

async function main(): Promise<void> {
  const args = helperArgs<{ socket: string; response?: CheckPermissionResponse }>();
  const response = args.response ?? SAMPLE_ALLOW;
  const server = new grpc.Server();
  const impl: DecisionServiceServer = {
    checkPermission: (call, cb) => {
      if (!call.request.token) return cb({ code: grpc.status.INVALID_ARGUMENT, details: 'token required' });
      cb(null, response);
    },
    checkPermissions: (_call, cb) =>
      cb({ code: grpc.status.UNIMPLEMENTED, details: 'not in the echo server' }),
    waitForApproval: (call) =>
      call.emit('error', { code: grpc.status.UNIMPLEMENTED, details: 'not in the echo server' }),
  };
  server.addService(DecisionServiceService, impl);
  const bind = (addr: string) =>
    new Promise<number>((resolve, reject) =>
      server.bindAsync(addr, grpc.ServerCredentials.createInsecure(), (err, port) =>
        err ? reject(err) : resolve(port),
      ),
    );
  rmSync(args.socket, { force: true });
  const port = await bind('127.0.0.1:0');
  await bind(`unix:${args.socket}`);
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const metrics = http.createServer((_req, res) => {
    void registry.metrics().then((text) => res.end(text));
  });
  await new Promise<void>((r) => metrics.listen(0, '127.0.0.1', r));
  exitWithParent(() => server.forceShutdown());
  const metricsUrl = `http://127.0.0.1:${(metrics.address() as AddressInfo).port}/metrics`;
  console.log(JSON.stringify({ type: 'listening', port, unix: `unix:${args.socket}`, metrics: metricsUrl }));
}

main().catch((err: unknown) => {
  console.log(JSON.stringify({ type: 'fatal', error: String((err as Error).stack ?? err) }));
  process.exit(1);
});
