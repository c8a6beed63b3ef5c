/**
 * The audit trail, read side: query (newest first, paged), export (oldest first, streamed in
 * bounded memory as CSV, JSON or NDJSON), follow (new records as they are stored, through any
 * replica), with one filter grammar for REST and gRPC.
 */
import { invalid } from '../../common/errors';
import { Decision, ReasonCode } from '../../gen/act/v1/decision';
import type { AuditRecord } from '../../gen/act/v1/admin';
import type { AuditFilter, AuditPage, Store } from '../../store/types';
import { decodeCursor, pageSize, parseTime, requireString } from '../validate';

type Json = Record<string, unknown>;

export type ExportFormat = 'csv' | 'json' | 'ndjson';

export interface AuditQueryInput {
  filter: AuditFilter;
  cursor: string;
  limit: number;
}

/** Filters from a query string or a QueryAuditRequest turned into the same shape. */
export function parseAuditFilter(q: Json): AuditFilter {
  const f: AuditFilter = {};
  const str = (k: string) => {
    const v = q[k];
    if (v === undefined || v === '' || v === null) return undefined;
    return requireString(v, k, { max: 256 });
  };
  const agent = str('agent_id');
  if (agent) f.agent_id = agent;
  const token = str('token_id');
  if (token) f.token_id = token;
  const action = str('action');
  if (action) f.action = action;
  const decision = str('decision');
  if (decision) {
    const n = Decision[decision.toUpperCase() as keyof typeof Decision];
    if (typeof n !== 'number' || n <= 0)
      throw invalid('decision', 'decision must be ALLOW, DENY or APPROVAL_REQUIRED');
    f.decision = n;
  }
  const reason = str('reason_code') ?? str('reason');
  if (reason) {
    const n = ReasonCode[reason.toUpperCase() as keyof typeof ReasonCode];
    if (typeof n !== 'number' || n <= 0)
      throw invalid('reason_code', `reason_code ${JSON.stringify(reason)} is not a reason code`);
    f.reason_code = n;
  }
  const since = str('since');
  if (since) f.sinceMs = parseTime(since, 'since');
  const until = str('until');
  if (until) f.untilMs = parseTime(until, 'until');
  if (f.sinceMs !== undefined && f.untilMs !== undefined && f.sinceMs >= f.untilMs)
    throw invalid('until', 'until must be after since');
  decodeCursor(q.cursor);
  return f;
}

export function parseAuditQuery(q: Json): AuditQueryInput {
  return {
    filter: parseAuditFilter(q),
    cursor: typeof q.cursor === 'string' ? q.cursor : '',
    limit: pageSize(q.limit, 100, 1000),
  };
}

export function parseExportFormat(v: unknown): ExportFormat {
  const f = v === undefined || v === '' ? 'ndjson' : v;
  if (f !== 'csv' && f !== 'json' && f !== 'ndjson')
    throw invalid('format', 'format must be csv, json or ndjson');
  return f;
}

/** Whether a record passes a filter (follow mode, where the store does not filter). */
export function matchesFilter(r: AuditRecord, f: AuditFilter): boolean {
  return (
    (!f.agent_id || r.agent_id === f.agent_id) &&
    (!f.token_id || r.token_id === f.token_id) &&
    (!f.action || r.action === f.action) &&
    (f.decision === undefined || r.decision === f.decision) &&
    (f.reason_code === undefined || r.reason_code === f.reason_code)
  );
}

export class AuditService {
  constructor(private readonly store: Store) {}

  query(i: AuditQueryInput): Promise<AuditPage> {
    return this.store.audit.query(i.filter, i.cursor, i.limit);
  }

  /** Oldest first, lazily. */
  records(filter: AuditFilter): AsyncIterable<AuditRecord> {
    return this.store.audit.export(filter);
  }

  /** Calls `fn` with each batch of newly stored records that pass the filter; returns an unsubscribe. */
  follow(filter: AuditFilter, fn: (records: AuditRecord[]) => void): () => void {
    return this.store.audit.onAppend((records) => {
      const keep = records.filter((r) => matchesFilter(r, filter));
      if (keep.length > 0) fn(keep);
    });
  }
}
