/**
 * `@act-platform/sdk/fastify`: a Fastify (4 or 5) `preHandler` hook that checks every request with
 * the sidecar before the route handler runs.
 *
 * ```ts
 * import { ACTClient } from '@act-platform/sdk';
 * import { actFastify } from '@act-platform/sdk/fastify';
 * const act = new ACTClient({ token: process.env.ACT_TOKEN });
 * app.get('/customers/:id', { preHandler: actFastify({ client: act, action: 'read:customer_profile',
 *   resource: (req) => (req.params as { id: string }).id }) }, handler);
 * ```
 *
 * Answers as the Express middleware does: 403 `{ error, reason, reason_code, audit_id }` (plus
 * `approval_id`), 503 when no decision could be made, 400 for a request the sidecar calls malformed.
 * Allowed requests carry the decision as `request.act`.
 */
import type { FastifyReply, FastifyRequest, RouteGenericInterface } from 'fastify';
import type { ACTClient } from '../client.js';
import type { Decision } from '../decision.js';
import { httpOutcome, resolve } from './http.js';

export type { DeniedBody } from './http.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The ACT decision that let this request through (set by actFastify()). */
    act?: Decision;
  }
}

/** `Route` types the request the resolvers see, as in `app.get<Route>()`: `actFastify<{ Params: { id: string } }>(…)`. */
export interface ACTFastifyOptions<Route extends RouteGenericInterface = RouteGenericInterface> {
  /** The client (one per process: it holds the channel). */
  client: ACTClient;
  /** The action to check, or a function of the request. */
  action: string | ((req: FastifyRequest<Route>) => string);
  /** The resource, e.g. `(req) => req.params.id`. Default: none. */
  resource?: string | ((req: FastifyRequest<Route>) => string | undefined);
  /** The context. Default: `{ ip, method, path }` of the request. */
  context?: Record<string, unknown> | ((req: FastifyRequest<Route>) => Record<string, unknown> | undefined);
}

/** Builds the hook. A resolver that throws, or returns a malformed request, becomes a 500 via Fastify. */
export function actFastify<Route extends RouteGenericInterface = RouteGenericInterface>(
  options: ACTFastifyOptions<Route>,
): (request: FastifyRequest<Route>, reply: FastifyReply) => Promise<FastifyReply | undefined> {
  const { client, action, resource, context } = options;
  if (!client || typeof client.check !== 'function')
    throw new TypeError('actFastify() needs { client: ACTClient }');
  if (typeof action !== 'string' && typeof action !== 'function')
    throw new TypeError('actFastify() needs { action } (a string or a function of the request)');
  return async (request, reply) => {
    const outcome = await httpOutcome(client, {
      action: resolve(action, request),
      resource: resource === undefined ? undefined : resolve(resource, request),
      context:
        context === undefined
          ? { ip: request.ip, method: request.method, path: request.url.split('?')[0] }
          : resolve(context, request),
    });
    if (outcome.allowed) {
      request.act = outcome.decision;
      return undefined;
    }
    // Returning the reply after send() ends the hook chain: the handler never runs.
    return reply.code(outcome.status).send(outcome.body);
  };
}
