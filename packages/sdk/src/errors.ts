/**
 * The SDK's errors. A decision (ALLOW, DENY, APPROVAL_REQUIRED) is always a value; these are
 * for calls that produced no decision, and every one of them means "not allowed".
 */
import { status as GrpcStatus, type ServiceError } from '@grpc/grpc-js';

/**
 * Why a call produced no decision: a gRPC status name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`,
 * `INVALID_ARGUMENT`, `UNIMPLEMENTED`, …), or `CLOSED` (the client was closed), `CANCELLED`
 * (the caller's AbortSignal fired) or `PROTOCOL_ERROR` (an answer the SDK will not trust).
 */
export type ACTErrorCode = keyof typeof GrpcStatus | 'CLOSED' | 'PROTOCOL_ERROR';

/** Base class of every error the client rejects with (argument errors are plain TypeErrors). */
export class ACTError extends Error {
  override readonly name: string = 'ACTError';
  /** Why no decision was made. */
  readonly code: ACTErrorCode;
  /** The numeric gRPC status, when the error came from gRPC. */
  readonly grpcCode: number | undefined;

  constructor(code: ACTErrorCode, message: string, options: { cause?: unknown; grpcCode?: number } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.grpcCode = options.grpcCode;
  }
}

/** The sidecar could not be reached (or said it cannot decide now, e.g. while shutting down). */
export class ACTUnavailableError extends ACTError {
  override readonly name = 'ACTUnavailableError';
}

/** No answer before the call's deadline. */
export class ACTTimeoutError extends ACTError {
  override readonly name = 'ACTTimeoutError';
}

/** The sidecar refused the request as malformed (e.g. an action over 256 bytes); see `message`. */
export class ACTInvalidArgumentError extends ACTError {
  override readonly name = 'ACTInvalidArgumentError';
}

/** The sidecar's answer was not one the SDK can trust (e.g. a batch with a missing result). */
export class ACTProtocolError extends ACTError {
  override readonly name = 'ACTProtocolError';
  constructor(message: string) {
    super('PROTOCOL_ERROR', message);
  }
}

const NAMES = Object.fromEntries(Object.entries(GrpcStatus).map(([k, v]) => [v, k])) as Record<
  number,
  keyof typeof GrpcStatus
>;

/** Maps a grpc-js error to the SDK's error; `address` goes into the message, never the token. */
export function fromGrpcError(err: ServiceError, address: string): ACTError {
  const code = NAMES[err.code] ?? 'UNKNOWN';
  const detail = err.details || err.message;
  const opts = { cause: err, grpcCode: err.code };
  switch (err.code) {
    case GrpcStatus.UNAVAILABLE:
      return new ACTUnavailableError(code, `ACT sidecar at ${address} unavailable: ${detail}`, opts);
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new ACTTimeoutError(code, `ACT sidecar at ${address} did not answer in time: ${detail}`, opts);
    case GrpcStatus.INVALID_ARGUMENT:
      return new ACTInvalidArgumentError(code, `ACT sidecar refused the request: ${detail}`, opts);
    default:
      return new ACTError(code, `ACT call failed (${code}): ${detail}`, opts);
  }
}
