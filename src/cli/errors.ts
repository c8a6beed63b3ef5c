/**
 * Exit codes of `act <noun> <verb>` and the errors that carry them. Every
 * command ends in one of these; scripts branch on them (docs/cli.md).
 */
export const EXIT = {
  /** The command did what was asked. */
  OK: 0,
  /** The control plane (or sidecar) answered with an error. */
  API: 1,
  /** Bad command line, option value, file or configuration: nothing was sent. */
  USAGE: 2,
  /** The control plane (or sidecar) could not be reached. */
  UNREACHABLE: 3,
  /** `act check`: DENY or APPROVAL_REQUIRED; `act approvals wait`: not approved. */
  DENIED: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error that ends the command with a message on stderr and an exit code. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
  }
}

/** A usage mistake found before anything was sent (exit 2). */
export class UsageError extends CliError {
  constructor(message: string) {
    super(message, EXIT.USAGE);
  }
}

/** An error answer from the server (exit 1). */
export class ApiError extends CliError {
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
  ) {
    super(message, EXIT.API);
  }
}

/** The server could not be reached (exit 3). */
export class UnreachableError extends CliError {
  constructor(message: string) {
    super(message, EXIT.UNREACHABLE);
  }
}
