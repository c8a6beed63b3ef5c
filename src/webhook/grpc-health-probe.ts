/**
 * The injected sidecar's probe: `node /app/dist/webhook/grpc-health-probe.js 127.0.0.1:8711 [--live]`.
 *
 * Why an exec probe: the sidecar's decision API has no authentication, so it listens on
 * loopback only; kubelet's native gRPC (and httpGet/tcpSocket) probes dial the pod IP and
 * cannot reach it. This runs inside the sidecar container and asks grpc.health.v1.Health/Check
 * over loopback, as a native gRPC probe would.
 *
 *   default  exit 0 when the status is SERVING (readiness: the replica has synced)
 *   --live   exit 0 when the server answers at all, also NOT_SERVING (liveness: the process is
 *            responsive; a control-plane outage must not restart sidecars)
 *   --auto   the image's HEALTHCHECK: tries the control plane's gRPC port (ACT_GRPC_ADDR), then the
 *            sidecar's (ACT_SIDECAR_GRPC_ADDR), on loopback
 * Exit 1 otherwise, with the reason on stderr (kubelet shows it in the pod's events).
 */
import * as grpc from '@grpc/grpc-js';
import {
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthClient,
} from '../gen/grpc/health/v1/health';

export function probe(
  target: string,
  live: boolean,
  timeoutMs = 2000,
): Promise<{ ok: boolean; detail: string }> {
  const client = new HealthClient(target, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    client.check({ service: '' }, new grpc.Metadata(), { deadline: Date.now() + timeoutMs }, (err, res) => {
      client.close();
      if (err) resolve({ ok: false, detail: `health check failed: ${err.message}` });
      else {
        const status = ServingStatus[res.status] ?? String(res.status);
        resolve({ ok: live || res.status === ServingStatus.SERVING, detail: `status ${status}` });
      }
    });
  });
}

/** Loopback targets for `--auto` (the image's HEALTHCHECK): the control plane's gRPC port, then the sidecar's. */
export function autoTargets(env: NodeJS.ProcessEnv): string[] {
  const loop = (addr: string) => addr.replace(/^(0\.0\.0\.0|\[::\]|::):/, '127.0.0.1:');
  const sidecar = (env.ACT_SIDECAR_GRPC_ADDR ?? '127.0.0.1:8711').split(',')[0]!.trim();
  return [loop(env.ACT_GRPC_ADDR ?? '127.0.0.1:8701'), loop(sidecar)];
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const live = args.includes('--live');
  const targets = args.includes('--auto')
    ? autoTargets(process.env)
    : [args.find((a) => !a.startsWith('--')) ?? '127.0.0.1:8711'];
  void (async () => {
    const details: string[] = [];
    for (const t of targets) {
      const { ok, detail } = await probe(t, live);
      details.push(`${t}: ${detail}`);
      if (ok) {
        process.stdout.write(`${t}: ${detail}\n`);
        return;
      }
    }
    process.stderr.write(`${details.join('; ')}\n`);
    process.exitCode = 1;
  })();
}
