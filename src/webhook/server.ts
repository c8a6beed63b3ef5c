/**
 * The sidecar-injection admission webhook: HTTPS, `POST /mutate` (the API server appends
 * `?timeout=…s`), AdmissionReview v1 in and out. Served by the control plane when
 * --webhook-addr is set. A malformed review gets a clean error answer, never a crash: with a
 * readable uid a denial the API server can show, otherwise HTTP 400 (the API server then
 * applies the webhook's failurePolicy).
 */
import { readFileSync } from 'node:fs';
import https from 'node:https';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { HostPort } from '../common/options';
import type { Logger } from '../observability/logger';
import {
  parseAdmissionReview,
  reviewResponse,
  ReviewError,
  type AdmissionRequest,
  type AdmissionResponse,
} from './admission';
import type { WebhookOptions } from './config';
import { review, type InjectionConfig } from './inject';

export interface WebhookServerConfig extends HostPort {
  /** PEM files; re-read every minute so a renewed certificate (cert-manager) is picked up. */
  tlsCertFile: string;
  tlsKeyFile: string;
  injection: InjectionConfig;
  maxBodyBytes?: number;
}

export interface WebhookServer {
  port: number;
  stop(): Promise<void>;
}

/** The webhook part of the control plane's options → server config; undefined when disabled. */
export function webhookConfigFromOptions(
  o: WebhookOptions & { logLevel?: string },
): WebhookServerConfig | undefined {
  if (!o.webhookAddr) return undefined;
  const missing = [
    ['--webhook-tls-cert', o.webhookTlsCert],
    ['--webhook-tls-key', o.webhookTlsKey],
    ['--sidecar-image', o.sidecarImage],
    ['--sidecar-control-plane', o.sidecarControlPlane],
  ]
    .filter(([, v]) => !v)
    .map(([k]) => k);
  if (missing.length > 0) throw new Error(`--webhook-addr needs ${missing.join(', ')}`);
  return {
    ...o.webhookAddr,
    tlsCertFile: o.webhookTlsCert!,
    tlsKeyFile: o.webhookTlsKey!,
    injection: {
      image: o.sidecarImage!,
      controlPlane: o.sidecarControlPlane!,
      sidecarKeySecret: o.sidecarKeySecret,
      resources: o.sidecarResources,
      probe: o.sidecarProbe,
      drainTimeoutMs: o.sidecarDrainTimeout,
      ...(o.sidecarSpoolVolume ? { spoolVolume: o.sidecarSpoolVolume } : {}),
      ...(o.sidecarMcpConfigMap ? { mcpConfigMap: o.sidecarMcpConfigMap } : {}),
      ...(o.logLevel ? { logLevel: o.logLevel } : {}),
    },
  };
}

const DEFAULT_MAX_BODY = 8 * 1024 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

async function readBody(req: http.IncomingMessage, max: number): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new HttpError(415, 'Content-Type must be application/json');
  if (Number(req.headers['content-length'] ?? 0) > max)
    throw new HttpError(413, `body larger than ${max} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > max) throw new HttpError(413, `body larger than ${max} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message}`);
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** A review-shaped error answer for bodies without a usable uid. */
function errorReview(status: number, message: string): unknown {
  return reviewResponse({ uid: '', allowed: false, status: { status: 'Failure', code: status, message } });
}

export async function startWebhookServer(cfg: WebhookServerConfig, logger: Logger): Promise<WebhookServer> {
  const max = cfg.maxBodyBytes ?? DEFAULT_MAX_BODY;
  const readTls = () => ({ cert: readFileSync(cfg.tlsCertFile), key: readFileSync(cfg.tlsKeyFile) });
  let tls = readTls();

  const handle = async (req: http.IncomingMessage, res: http.ServerResponse): Promise<void> => {
    const url = (req.url ?? '/').split('?')[0];
    if (url === '/healthz' && req.method === 'GET') return sendJson(res, 200, { status: 'ok' });
    if (url !== '/mutate') return sendJson(res, 404, errorReview(404, `no route ${url}`));
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST');
      return sendJson(res, 405, errorReview(405, 'use POST'));
    }
    let request: AdmissionRequest;
    try {
      request = parseAdmissionReview(await readBody(req, max));
    } catch (err) {
      if (err instanceof HttpError) {
        logger.warn({ status: err.status, err: err.message }, 'admission review rejected');
        if (err.status === 413) req.resume();
        return sendJson(res, err.status, errorReview(err.status, err.message));
      }
      if (err instanceof ReviewError) {
        logger.warn({ uid: err.uid, err: err.message }, 'malformed admission review');
        if (err.uid === undefined) return sendJson(res, 400, errorReview(400, err.message));
        const denial: AdmissionResponse = {
          uid: err.uid,
          allowed: false,
          status: {
            status: 'Failure',
            code: 400,
            reason: 'BadRequest',
            message: `malformed AdmissionReview: ${err.message}`,
          },
        };
        return sendJson(res, 200, reviewResponse(denial));
      }
      throw err;
    }
    const response = review(request, cfg.injection);
    const pod = request.object as { metadata?: { name?: string; generateName?: string } } | undefined;
    logger.info(
      {
        uid: request.uid,
        namespace: request.namespace,
        pod: pod?.metadata?.name || pod?.metadata?.generateName,
        operation: request.operation,
        dry_run: request.dryRun === true,
        allowed: response.allowed,
        injected: response.patch !== undefined,
        ...(response.status?.message ? { reason: response.status.message } : {}),
      },
      'admission review',
    );
    sendJson(res, 200, reviewResponse(response));
  };

  const server = https.createServer({ ...tls, minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      logger.error({ err }, 'admission review failed');
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, errorReview(500, 'internal error'));
    });
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const reload = setInterval(() => {
    try {
      const next = readTls();
      if (!next.cert.equals(tls.cert) || !next.key.equals(tls.key)) {
        server.setSecureContext({ ...next, minVersion: 'TLSv1.2' });
        tls = next;
        logger.info('webhook certificate reloaded');
      }
    } catch (err) {
      logger.warn({ err }, 'webhook certificate reload failed; keeping the current one');
    }
  }, 60_000);
  reload.unref();
  const port = (server.address() as AddressInfo).port;
  logger.info(
    { webhook_port: port, image: cfg.injection.image, probe: cfg.injection.probe },
    'injection webhook listening',
  );

  let stopping: Promise<void> | undefined;
  return {
    port,
    stop: () =>
      (stopping ??= new Promise<void>((resolve) => {
        clearInterval(reload);
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 5000).unref();
      })),
  };
}
