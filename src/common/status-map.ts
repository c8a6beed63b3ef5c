/** The one table mapping error codes to HTTP and gRPC status codes (edges use only this). */
import { Metadata, status as GrpcStatus, type StatusObject } from '@grpc/grpc-js';
import { ActError, type ErrorCode } from './errors';

export const HTTP_STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  FAILED_PRECONDITION: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  RESOURCE_EXHAUSTED: 429,
  INTERNAL: 500,
  UNAVAILABLE: 503,
};

export const GRPC_STATUS: Record<ErrorCode, GrpcStatus> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  FAILED_PRECONDITION: GrpcStatus.FAILED_PRECONDITION,
  PAYLOAD_TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  UNSUPPORTED_MEDIA_TYPE: GrpcStatus.INVALID_ARGUMENT,
  RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  INTERNAL: GrpcStatus.INTERNAL,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
};

/** Anything with an error method (a pino logger). */
export interface ErrorLogger {
  error(obj: object, msg: string): void;
}

/**
 * The one mapping from an error to a gRPC status, for every gRPC server (control plane,
 * sidecar, sync hub): an ActError keeps its message and carries `act-code` (and `act-field`)
 * metadata; anything else is logged and becomes INTERNAL without detail.
 */
export function toGrpcError(err: unknown, logger?: ErrorLogger): Partial<StatusObject> {
  if (err instanceof ActError) {
    const md = new Metadata();
    md.set('act-code', err.code);
    if (err.field) md.set('act-field', err.field);
    return {
      code: GRPC_STATUS[err.code],
      details: err.field ? `${err.message} (field: ${err.field})` : err.message,
      metadata: md,
    };
  }
  logger?.error({ err }, 'rpc failed');
  return { code: GrpcStatus.INTERNAL, details: 'internal error' };
}
