/**
 * Errors of the PostgreSQL driver: a lost or refused connection becomes one clear UNAVAILABLE error
 * (the edge answers 503 / gRPC UNAVAILABLE); anything else passes through unchanged.
 */
import { ActError } from '../../common/errors';

const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
]);
// SQLSTATE 08xxx: connection exceptions; 57P01-03: the server is shutting down or starting.
const SERVER_GONE = new Set(['57P01', '57P02', '57P03']);

/** Whether `err` means the database could not be reached or the connection was lost. */
export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && (NET_CODES.has(code) || SERVER_GONE.has(code) || code.startsWith('08')))
    return true;
  return /Connection terminated|connection error|timeout exceeded when trying to connect|Client was closed|not queryable/i.test(
    err.message,
  );
}

/** SQLSTATEs worth running a whole transaction again for: serialization failure, deadlock. */
export function isRetryable(err: unknown): boolean {
  const code = (err as { code?: unknown } | undefined)?.code;
  return code === '40001' || code === '40P01';
}

/** `err` as the store's error: UNAVAILABLE for connection faults, else unchanged. */
export function storeError(err: unknown, doing: string): unknown {
  if (err instanceof ActError || !isConnectionError(err)) return err;
  return new ActError('UNAVAILABLE', `PostgreSQL store unavailable (${doing}): ${(err as Error).message}`, {
    cause: err,
  });
}
