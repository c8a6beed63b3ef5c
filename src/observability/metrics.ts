/** Prometheus metrics (prom-client), one registry per process: no global state. */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface DecisionMetrics {
  registry: Registry;
  decisions: Counter<'decision' | 'reason_code' | 'source'>;
  checkLatency: Histogram<'source'>;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  grpcRequests: Counter<'method' | 'code'>;
  revision: Gauge;
}

export function createMetrics(processName: string): DecisionMetrics {
  const registry = new Registry();
  registry.setDefaultLabels({ process: processName });
  collectDefaultMetrics({ register: registry });
  return {
    registry,
    decisions: new Counter({
      name: 'act_decisions_total',
      help: 'Decisions by result and reason code',
      labelNames: ['decision', 'reason_code', 'source'],
      registers: [registry],
    }),
    checkLatency: new Histogram({
      name: 'act_check_duration_seconds',
      help: 'Time to decide and make the audit record safe',
      labelNames: ['source'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1],
      registers: [registry],
    }),
    httpRequests: new Counter({
      name: 'act_http_requests_total',
      help: 'HTTP requests by route and status',
      labelNames: ['method', 'route', 'status'],
      registers: [registry],
    }),
    grpcRequests: new Counter({
      name: 'act_grpc_requests_total',
      help: 'gRPC calls by method and status code',
      labelNames: ['method', 'code'],
      registers: [registry],
    }),
    revision: new Gauge({
      name: 'act_revision',
      help: 'Latest control-plane revision known to this process',
      registers: [registry],
    }),
  };
}

/** A gauge read when scraped: `fn()` is its value at each collection. */
export function gaugeOf(registry: Registry, name: string, help: string, fn: () => number): Gauge {
  return new Gauge({
    name,
    help,
    registers: [registry],
    collect() {
      this.set(fn());
    },
  });
}
