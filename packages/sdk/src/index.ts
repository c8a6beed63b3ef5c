/**
 * `@act-platform/sdk`: the ACT client for Node.js. Adapters live in subpaths:
 * `@act-platform/sdk/express`, `@act-platform/sdk/fastify`, `@act-platform/sdk/langchain`.
 */
export {
  ACTClient,
  DEFAULT_ADDRESS,
  MAX_APPROVAL_WAIT_MS,
  MAX_BATCH,
  type ACTClientOptions,
  type CallOptions,
  type WaitForApprovalOptions,
} from './client.js';
export type {
  ApprovalStatus,
  ApprovalUpdate,
  Decision,
  DecisionDetails,
  DecisionKind,
  ReasonCode,
} from './decision.js';
export {
  ACTError,
  ACTInvalidArgumentError,
  ACTProtocolError,
  ACTTimeoutError,
  ACTUnavailableError,
  type ACTErrorCode,
} from './errors.js';
export type { CheckItem, CheckRequest } from './validate.js';
