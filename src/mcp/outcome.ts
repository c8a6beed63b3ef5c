/**
 * The second audit record of a forwarded call: what the upstream did, and how long it took,
 * linked to the decision's record by `context.mcp.decision_audit_id`. The decision record is
 * safe before the upstream sees the call; this one is appended when the upstream answered, so a
 * crash in between leaves the decision on record (the action is never unaccounted for) and at
 * worst no outcome.
 */
import { buildAuditRecord } from '../audit/record';
import type { CheckOutcome } from '../decision/wire';
import type { AuditRecord } from '../gen/act/v1/admin';
import type { CallOutcome } from './checker';
import type { CheckParts } from './mapping';

const TARGET_KEY: Record<string, string> = {
  'tools/call': 'tool',
  'resources/read': 'uri',
  'prompts/get': 'prompt',
};

export function outcomeRecord(
  decision: CheckOutcome,
  parts: CheckParts,
  out: CallOutcome,
  auditId: string,
  nowMs: number,
): AuditRecord {
  const ms = Math.round(out.latencyMs * 10) / 10;
  const mcp: Record<string, unknown> = {
    record: 'outcome',
    decision_audit_id: decision.auditId,
    server: out.server,
    method: out.method,
    [TARGET_KEY[out.method] ?? 'target']: out.target,
    outcome: out.outcome,
    latency_ms: ms,
  };
  if (out.error !== undefined) mcp.error = out.error;
  if (out.resultBytes !== undefined) mcp.result_bytes = out.resultBytes;
  return buildAuditRecord({
    auditId,
    nowMs,
    action: parts.action,
    resource: parts.resource,
    context: { mcp },
    result: {
      ...decision.result,
      reason: `MCP outcome of ${decision.auditId}: ${out.outcome} after ${ms} ms`,
    },
    revision: decision.revision,
    latencyUs: out.latencyMs * 1000,
    approvalId: decision.approvalId,
  });
}
