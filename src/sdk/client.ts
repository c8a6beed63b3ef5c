/**
 * The client agents import: asks the pod-local sidecar (or the control plane)
 * "may I?" over gRPC. Depends only on the generated code and common/.
 *
 * ```ts
 * const act = new ActClient({ token: process.env.ACT_TOKEN! });
 * const d = await act.checkPermission('read:customer_profile', { resource: 'customer_123' });
 * if (!d.allowed) throw new Error(d.reason);
 * ```
 */
import * as grpc from '@grpc/grpc-js';
import { decisionFromWire, reasonFromWire, type DecisionKind, type ReasonCode } from '../common/reasons';
import { DecisionServiceClient, type CheckPermissionResponse } from '../gen/act/v1/decision';

export interface ActClientOptions {
  /** The agent's ACT token ("act_..."). */
  token: string;
  /** Sidecar address: "127.0.0.1:8711" (default, or ACT_SIDECAR_GRPC_ADDR) or "unix:/path". */
  address?: string;
  /** Channel credentials (default: plaintext, for the pod-local sidecar). */
  credentials?: grpc.ChannelCredentials;
  /** Bearer metadata for the control plane's central enforcement (default: the token itself). */
  authorization?: string;
  /** Per-call deadline in ms (default 2000). On a timeout the call rejects: treat it as a deny. */
  timeoutMs?: number;
}

export interface CheckOptions {
  resource?: string;
  context?: Record<string, unknown>;
  /** An approval returned by an earlier APPROVAL_REQUIRED answer, once a human approved it. */
  approvalId?: string;
}

export interface Decision {
  allowed: boolean;
  decision: DecisionKind;
  reasonCode: ReasonCode | undefined;
  reason: string;
  auditId: string;
  approvalId: string;
  retryAfterMs: number;
  missingCapability: string;
  raw: CheckPermissionResponse;
}

export class ActClient {
  private readonly client: DecisionServiceClient;
  private readonly metadata = new grpc.Metadata();

  constructor(private readonly opts: ActClientOptions) {
    const address = opts.address ?? process.env.ACT_SIDECAR_GRPC_ADDR?.split(',')[0] ?? '127.0.0.1:8711';
    this.client = new DecisionServiceClient(address, opts.credentials ?? grpc.credentials.createInsecure());
    this.metadata.set('authorization', opts.authorization ?? `Bearer ${opts.token}`);
  }

  /** Asks whether the token may perform `action`; a deny resolves (allowed false), faults reject. */
  checkPermission(action: string, o: CheckOptions = {}): Promise<Decision> {
    return new Promise((resolve, reject) => {
      this.client.checkPermission(
        {
          token: this.opts.token,
          action,
          resource: o.resource ?? '',
          context: o.context ?? {},
          approval_id: o.approvalId ?? '',
        },
        this.metadata,
        { deadline: Date.now() + (this.opts.timeoutMs ?? 2000) },
        (err, res) => {
          if (err) return reject(err);
          const d = decisionFromWire(res.decision) ?? 'DENY';
          resolve({
            allowed: res.allowed && d === 'ALLOW',
            decision: d,
            reasonCode: reasonFromWire(res.reason_code),
            reason: res.reason,
            auditId: res.audit_id,
            approvalId: res.approval_id,
            retryAfterMs: res.details?.retry_after_ms ?? 0,
            missingCapability: res.details?.missing_capability ?? '',
            raw: res,
          });
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
