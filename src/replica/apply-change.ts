/**
 * Change application, once for every view of the control plane's state: the sidecar's LMDB
 * replica and the control plane's in-memory view implement `ChangeSink`, and this is the one
 * place that knows what each kind of Change means. Upserts replace, deletes remove;
 * `token_issued` is internal to the control plane's sync hub and ignored by views.
 */
import { ActError } from '../common/errors';
import type { Agent, Approval, Policy } from '../gen/act/v1/admin';
import type { Change, PublicKey, Revocation } from '../gen/act/v1/sync';

export interface ChangeSink {
  putAgent(a: Agent): void;
  deleteAgent(agentId: string): void;
  putPolicy(p: Policy): void;
  deletePolicy(policyId: string): void;
  putRevocation(r: Revocation): void;
  putPublicKey(k: PublicKey): void;
  deletePublicKey(keyId: string): void;
  putApproval(a: Approval): void;
}

/** Applies one change to a sink; throws INVALID_ARGUMENT on a change without its id. */
export function applyChange(c: Change, sink: ChangeSink): void {
  const k = c.kind;
  if (k === undefined) return;
  switch (k.$case) {
    case 'agent':
      requireId(k.value.agent_id, 'agent.agent_id');
      return sink.putAgent(k.value);
    case 'agent_deleted':
      return sink.deleteAgent(requireId(k.value, 'agent_deleted'));
    case 'policy':
      requireId(k.value.policy_id, 'policy.policy_id');
      return sink.putPolicy(k.value);
    case 'policy_deleted':
      return sink.deletePolicy(requireId(k.value, 'policy_deleted'));
    case 'revocation':
      requireId(k.value.token_id, 'revocation.token_id');
      return sink.putRevocation(k.value);
    case 'public_key':
      requireId(k.value.key_id, 'public_key.key_id');
      return sink.putPublicKey(k.value);
    case 'public_key_deleted':
      return sink.deletePublicKey(requireId(k.value, 'public_key_deleted'));
    case 'approval':
      requireId(k.value.approval_id, 'approval.approval_id');
      return sink.putApproval(k.value);
    case 'token_issued':
      return;
  }
}

function requireId(id: unknown, field: string): string {
  if (typeof id !== 'string' || id.length === 0) {
    throw new ActError('INVALID_ARGUMENT', `sync change without a valid ${field}`, { field });
  }
  return id;
}

/** A revocation entry's expiry when two arrive for one token: the later wins; 0 (unknown) wins always. */
export function mergeRevocationExpiry(prev: number | undefined, next: number): number {
  if (prev === undefined) return next;
  return prev === 0 || next === 0 ? 0 : Math.max(prev, next);
}
