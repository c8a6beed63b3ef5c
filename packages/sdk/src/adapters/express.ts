/**
 * `@act-platform/sdk/express`: an Express (4 or 5) or Connect middleware that checks every request
 * with the sidecar before the route handler runs.
 *
 * ```ts
 * import { ACTClient } from '@act-platform/sdk';
 * import { actExpress } from '@act-platform/sdk/express';
 * const act = new ACTClient({ token: process.env.ACT_TOKEN });
 * app.get('/customers/:id', actExpress({ client: act, action: 'read:customer_profile',
 *   resource: (req) => req.params.id }), handler);
 * ```
 *
 * Allowed: `next()`, with the decision in `res.locals.act`. Denied: 403 `{ error, reason, reason_code,
 * audit_id }` (plus `approval_id` when a human must approve). No decision (sidecar unreachable, too
 * slow): 503. A request the sidecar calls malformed (e.g. a resource over 1 KiB): 400.
 */
import type { ACTClient } from '../client.js';
import { httpOutcome, resolve } from './http.js';

export type { DeniedBody } from './http.js';

/** The parts of an Express/Connect request the defaults read (typed structurally: no @types/express needed). */
export interface RequestLike {
  ip?: string | undefined;
  method?: string | undefined;
  path?: string | undefined;
  url?: string | undefined;
  /** Loosely typed here; pass your framework's type for precise ones: `actExpress<Request<{ id: string }>>(…)`. */
  params?: any;
  query?: any;
  body?: any;
  route?: any;
}

/** The parts of a response the middleware uses. */
export interface ResponseLike {
  status(code: number): { json(body: any): unknown };
  locals?: Record<string, any>;
}

export interface ACTExpressOptions<Req extends RequestLike = RequestLike> {
  /** The client (one per process: it holds the channel). */
  client: ACTClient;
  /** The action to check, or a function of the request, e.g. `(req) => req.route.action`. */
  action: string | ((req: Req) => string);
  /** The resource, e.g. `(req) => req.params.resourceId`. Default: none. */
  resource?: string | ((req: Req) => string | undefined);
  /** The context. Default: `{ ip, method, path }` of the request. */
  context?: Record<string, unknown> | ((req: Req) => Record<string, unknown> | undefined);
}

/** Builds the middleware. A resolver that throws, or returns a malformed request, goes to `next(err)`. */
export function actExpress<Req extends RequestLike = RequestLike>(
  options: ACTExpressOptions<Req>,
): (req: Req, res: ResponseLike, next: (err?: unknown) => void) => void {
  const { client, action, resource, context } = options;
  if (!client || typeof client.check !== 'function')
    throw new TypeError('actExpress() needs { client: ACTClient }');
  if (typeof action !== 'string' && typeof action !== 'function')
    throw new TypeError('actExpress() needs { action } (a string or a function of the request)');
  return (req, res, next) => {
    // Express 4 ignores a returned promise: every path ends in next() or a response here.
    void (async () => {
      const outcome = await httpOutcome(client, {
        action: resolve(action, req),
        resource: resource === undefined ? undefined : resolve(resource, req),
        context:
          context === undefined
            ? { ip: req.ip, method: req.method, path: req.path ?? req.url?.split('?')[0] }
            : resolve(context, req),
      });
      if (outcome.allowed) {
        if (res.locals) res.locals.act = outcome.decision;
        next();
      } else {
        res.status(outcome.status).json(outcome.body);
      }
    })().catch((err: unknown) => next(err));
  };
}
