/**
 * The CLI's public face: `runCli` for the binary, the exit codes, and the
 * export-record mapping `act audit verify` uses (also used by tests).
 */
export { runCli, buildProgram, EXIT_CODES_HELP, type ProcessCommand } from './program';
export { EXIT } from './errors';
export { fromExportJson } from './audit-verify';
export { describeStartupError, preflight, isGrpcBindNoise } from './startup-errors';
