/**
 * pino logger with redaction: token strings, API keys, private keys and
 * Authorization headers never reach the log; log a token's id instead.
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export const REDACT_PATHS = [
  'token',
  '*.token',
  'secret',
  '*.secret',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'private_key_pem',
  '*.private_key_pem',
  'adminKey',
  '*.adminKey',
];

// Tokens and API keys that slip into free text (messages, error strings) are masked too.
const SECRET_RE = /\b(act_[A-Za-z0-9_-]{8})[A-Za-z0-9_.-]*|\b(actk_ak_[0-9a-z]{4})[A-Za-z0-9_-]*/g;

export function maskSecrets(s: string): string {
  return s.replace(SECRET_RE, (_m, a?: string, b?: string) => `${a ?? b}…[redacted]`);
}

export interface LoggerConfig {
  level: string;
  /** Where logs go; default stdout. */
  destination?: NodeJS.WritableStream;
}

export function createLogger(config: LoggerConfig, base: Record<string, unknown>): Logger {
  return pino(
    {
      level: config.level,
      base,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++)
            if (typeof args[i] === 'string') args[i] = maskSecrets(args[i] as string);
          method.apply(this, args as Parameters<typeof method>);
        },
      },
      formatters: {
        log(obj) {
          const err = obj.err as { message?: string; stack?: string } | undefined;
          if (err && typeof err === 'object') {
            if (typeof err.message === 'string') err.message = maskSecrets(err.message);
            if (typeof err.stack === 'string') err.stack = maskSecrets(err.stack);
          }
          return obj;
        },
      },
    },
    config.destination ?? process.stdout,
  );
}
