/**
 * `@act-platform/sdk/langchain`: wraps a LangChain.js tool (`@langchain/core`) so that every call is
 * checked with the sidecar before the tool runs.
 *
 * ```ts
 * import { ACTClient } from '@act-platform/sdk';
 * import { withACT } from '@act-platform/sdk/langchain';
 * const act = new ACTClient({ token: process.env.ACT_TOKEN });
 * const guarded = withACT(refundTool, { client: act, action: 'create:refund', resource: (i) => i.orderId });
 * ```
 *
 * The model sees a deny as the tool's answer, so it can explain or change course instead of
 * crashing the run: "Permission denied: …", or "Needs human approval (approval_…): …". Invoked with
 * a tool call, that answer is a ToolMessage with `status: "error"`. When the same call comes again
 * after a human approved, the wrapper presents the approval and the tool runs (once per approval).
 * No decision (sidecar unreachable, too slow) throws: the tool does not run.
 */
import type { CallbackManagerForToolRun } from '@langchain/core/callbacks/manager';
import { ToolMessage } from '@langchain/core/messages';
import {
  DynamicStructuredTool,
  type StructuredToolInterface,
  type ToolRunnableConfig,
} from '@langchain/core/tools';
import type { ACTClient } from '../client.js';
import type { Decision } from '../decision.js';
import { ACTError } from '../errors.js';
import { isPlainObject } from '../validate.js';

export interface ACTToolOptions<Input = any> {
  /** The client (one per process: it holds the channel). */
  client: ACTClient;
  /** The action to check, or a function of the tool's input. Default: `call:<tool name>`. */
  action?: string | ((input: Input) => string);
  /** The resource, or a function of the input. Default: none. */
  resource?: string | ((input: Input) => string | undefined);
  /**
   * The context (what policy conditions see, e.g. `context.amount`, and what the audit records).
   * Default: the tool's input when it is an object, else `{ input }`.
   */
  context?: (input: Input) => Record<string, unknown> | undefined;
  /**
   * When a human must approve, wait this long (ms, at most 900000) for the decision before
   * answering; on approval the tool runs at once. Default: do not wait (answer "Needs human approval").
   */
  waitForApprovalMs?: number;
}

/** Approvals remembered per distinct request (so "call again once approved" works); oldest dropped first. */
const MAX_REMEMBERED = 1000;

/** Returns a tool with the same name, description and schema whose calls are checked first. */
export function withACT<Input = any>(
  tool: StructuredToolInterface,
  options: ACTToolOptions<Input>,
): DynamicStructuredTool {
  const { client, resource, context, waitForApprovalMs } = options;
  if (!client || typeof client.check !== 'function')
    throw new TypeError('withACT() needs { client: ACTClient }');
  if (!tool || typeof tool.invoke !== 'function' || typeof tool.name !== 'string')
    throw new TypeError('withACT() takes a LangChain tool as its first argument');
  if (waitForApprovalMs !== undefined && (!Number.isInteger(waitForApprovalMs) || waitForApprovalMs < 1))
    throw new TypeError('withACT(): waitForApprovalMs must be a positive integer');
  const action = options.action ?? `call:${tool.name}`;
  const approvals = new Map<string, string>();

  const guarded = async (
    input: Input,
    runManager?: CallbackManagerForToolRun,
    config?: ToolRunnableConfig,
  ): Promise<unknown> => {
    const request = {
      action: typeof action === 'function' ? action(input) : action,
      resource: typeof resource === 'function' ? resource(input) : resource,
      context: context ? context(input) : isPlainObject(input) ? input : { input },
    };
    const key = canonical(request);
    const signal = config?.signal;
    let d = await client.check({ ...request, approvalId: approvals.get(key) }, { signal });
    if (d.decision === 'APPROVAL_REQUIRED' && d.approvalId && waitForApprovalMs !== undefined) {
      const approved = await approvedInTime(client, d.approvalId, waitForApprovalMs, signal);
      if (approved) d = await client.check({ ...request, approvalId: d.approvalId }, { signal });
    }
    if (d.allowed) {
      approvals.delete(key);
      return tool.invoke(input as never, { ...config, callbacks: runManager?.getChild() });
    }
    if (d.decision === 'APPROVAL_REQUIRED' && d.approvalId) remember(approvals, key, d.approvalId);
    else approvals.delete(key);
    const text = refusal(d);
    const id = config?.toolCall?.id;
    return id ? new ToolMessage({ content: text, tool_call_id: id, name: tool.name, status: 'error' }) : text;
  };

  return new DynamicStructuredTool({
    name: tool.name,
    description: tool.description,
    schema: tool.schema as any,
    returnDirect: tool.returnDirect,
    func: guarded as any,
  });
}

/** The text the model reads for a refusal: what happened, why, and what it can do. */
export function refusal(d: Decision): string {
  if (d.decision === 'APPROVAL_REQUIRED')
    return (
      `Needs human approval (${d.approvalId ?? 'no approval id'}): ${d.reason}. The action was not performed. ` +
      'Once a human has approved it, call this tool again with exactly the same arguments.'
    );
  const hints: string[] = [];
  if (d.details.missingCapability) hints.push(`missing capability ${d.details.missingCapability}`);
  if (d.details.retryAfterMs) hints.push(`retry after ${Math.ceil(d.details.retryAfterMs / 1000)} s`);
  return `Permission denied: ${d.reason} [${d.reasonCode}]${hints.length ? ` (${hints.join('; ')})` : ''}. The action was not performed.`;
}

async function approvedInTime(
  client: ACTClient,
  approvalId: string,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  try {
    const u = await client.waitForApproval(approvalId, { timeoutMs, signal });
    return u.status === 'APPROVED';
  } catch (err) {
    // No answer on the wait is not an answer on the approval: report it as still pending.
    if (err instanceof ACTError && err.code !== 'CANCELLED') return false;
    throw err;
  }
}

function remember(map: Map<string, string>, key: string, approvalId: string): void {
  map.delete(key);
  map.set(key, approvalId);
  if (map.size > MAX_REMEMBERED) map.delete(map.keys().next().value!);
}

/** A stable key of a request (object keys sorted at every level). */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x: unknown) =>
    isPlainObject(x)
      ? Object.fromEntries(
          Object.keys(x)
            .sort()
            .map((k) => [k, x[k]]),
        )
      : x,
  );
}
