/**
 * Errors for bad input and faults. A deny is a value (see decision/), never an
 * exception; these are for requests that cannot be processed. The edge maps
 * `code` to an HTTP status and a gRPC status in one table (see `status-map.ts`).
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'ALREADY_EXISTS'
  | 'FAILED_PRECONDITION'
  | 'UNAUTHENTICATED'
  | 'PERMISSION_DENIED'
  | 'PAYLOAD_TOO_LARGE'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'RESOURCE_EXHAUSTED'
  | 'UNAVAILABLE'
  | 'INTERNAL';

export class ActError extends Error {
  readonly code: ErrorCode;
  /** The request field at fault, when there is one (e.g. "capabilities[2]"). */
  readonly field: string | undefined;

  constructor(code: ErrorCode, message: string, options: { field?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ActError';
    this.code = code;
    this.field = options.field;
  }
}

/** Shorthand for an INVALID_ARGUMENT error on a field. */
export function invalid(field: string, message: string): ActError {
  return new ActError('INVALID_ARGUMENT', message, { field });
}

export function notFound(what: string, id: string, field?: string): ActError {
  return new ActError('NOT_FOUND', `${what} ${JSON.stringify(id)} not found`, field ? { field } : {});
}

/**
 * A process cannot start: what failed, and the flag and environment variable to change. The
 * binary prints it as one line (no stack) and exits non-zero; nothing has been written to disk.
 */
export class StartupError extends Error {
  constructor(
    message: string,
    /** e.g. "--http-addr / ACT_HTTP_ADDR" */
    readonly setting?: string,
    options: { cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StartupError';
  }
}
