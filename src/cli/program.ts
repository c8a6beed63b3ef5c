/**
 * `act <noun> <verb>`: one commander program over the control plane's admin
 * REST API. Commander gives --help for every noun and verb, "did you mean"
 * suggestions for unknown commands and options, and typed option parsing; this
 * file maps its outcomes (and the commands' errors) to the documented exit codes.
 */
import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../common/version';
import { registerAgents } from './commands/agents';
import { registerApiKeys } from './commands/api-keys';
import { registerApprovals } from './commands/approvals';
import { registerAudit } from './commands/audit';
import { registerCheck } from './commands/check';
import { registerKeys } from './commands/keys';
import { registerLogin } from './commands/login';
import { registerPolicies } from './commands/policies';
import { registerSidecars } from './commands/sidecars';
import { registerTokens } from './commands/tokens';
import { Ctx, type Kit } from './context';
import { CliError, EXIT } from './errors';
import { exitQuietlyOnClosedPipe } from './output';

export type { Kit } from './context';

/** A long-running process (`act control-plane`, `act sidecar`) listed in the help; run by the binary itself. */
export interface ProcessCommand {
  name: string;
  summary: string;
}

export const EXIT_CODES_HELP = `Exit codes:
  0  success
  1  the control plane (or sidecar) answered with an error
  2  usage error: unknown command or option, bad value, missing key; nothing was sent
  3  the control plane (or sidecar) could not be reached
  4  act check: DENY or APPROVAL_REQUIRED (the approval id is printed);
     act approvals wait: not approved (denied, expired, or still pending at the timeout)`;

const ENV_HELP = `Connection (flags > environment > config file):
  --url      ACT_URL      control-plane REST URL (default http://127.0.0.1:8700)
  --key      ACT_KEY      API key (also ACT_ADMIN_KEY); \`act login\` saves both
  --config   ACT_CONFIG   config file (default ~/.config/act/config.json, mode 0600)`;

const FIRST_STEPS = `The four steps, an approval, a revocation and an export:
  act login --url http://127.0.0.1:8700 --key <admin key>
  act agents create --name "Customer Support Agent" --metadata team=customer-success
  act policies create --name "Support" --capability read:customer_profile --rate-limit "100 per minute"
  act tokens create --agent agent_… --policy policy_… --expires-in 30d
  act check --token act_… --action read:customer_profile --resource customer_54321
  act approvals list --status PENDING; act approvals approve approval_…
  act tokens revoke tok_… --wait 5s
  act audit export --format csv --output audit.csv`;

/** Builds the program; `processes` are listed and suggested but run by the caller. */
export function buildProgram(
  env: NodeJS.ProcessEnv,
  state: { code: number },
  processes: ProcessCommand[] = [],
): Command {
  const program = new Command('act');
  program
    .description('ACT — Agent Capability Tokens: least-privilege, audited permission checks for AI agents.')
    .usage('<command> [verb] [options]')
    .version(VERSION, '-v, --version', 'print the version')
    .addOption(new Option('--url <url>', 'control-plane REST URL (env ACT_URL)'))
    .addOption(new Option('--key <key>', 'API key (env ACT_KEY)'))
    .addOption(new Option('--config <file>', 'config file (env ACT_CONFIG)'))
    .option('--json', 'print the API answer as JSON (for scripts)')
    .option('-q, --quiet', 'print only ids (tokens create: the token; api-keys create: the secret)')
    .exitOverride()
    .configureHelp({ showGlobalOptions: true })
    .showSuggestionAfterError(true)
    .showHelpAfterError('(add --help for usage)')
    .configureOutput({
      outputError: (str, write) => write(str.replace(/^error: /, 'act: ')),
    })
    .addHelpText(
      'after',
      `\n${ENV_HELP}\n\n${EXIT_CODES_HELP}\n\n${FIRST_STEPS}\n\nRun "act <command> --help" or "act <command> <verb> --help" for details; docs/cli.md has them all.`,
    );

  for (const p of processes)
    program
      .command(p.name)
      .description(p.summary)
      .helpOption(false)
      .allowUnknownOption()
      .allowExcessArguments()
      .action(() => {
        throw new Error(`${p.name} is run by the act binary, not the CLI`);
      });

  const kit: Kit = {
    action:
      (fn) =>
      async (...args: unknown[]) => {
        const cmd = args[args.length - 1] as Command;
        const c = new Ctx(cmd, env);
        const code = await fn(c, ...(args.slice(0, -1) as never));
        state.code = typeof code === 'number' ? code : EXIT.OK;
      },
  };
  registerLogin(program, kit);
  registerAgents(program, kit);
  registerPolicies(program, kit);
  registerTokens(program, kit);
  registerCheck(program, kit);
  registerApprovals(program, kit);
  registerAudit(program, kit);
  registerKeys(program, kit);
  registerApiKeys(program, kit);
  registerSidecars(program, kit);
  program
    .command('version')
    .description('print the version')
    .action(() => {
      process.stdout.write(`${VERSION}\n`);
    });
  return program;
}

/** Runs `act <argv…>` (not the process commands) and returns the exit code. */
export async function runCli(
  argv: string[],
  env: NodeJS.ProcessEnv = process.env,
  processes: ProcessCommand[] = [],
): Promise<number> {
  exitQuietlyOnClosedPipe();
  const state = { code: EXIT.OK as number };
  const program = buildProgram(env, state, processes);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return state.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help, `act help`, --version: 0; bare `act` or `act agents` (help on stderr) and every parse error: 2.
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') return EXIT.OK;
      if (err.code === 'commander.help') return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return EXIT.USAGE;
    }
    if (err instanceof CliError) {
      process.stderr.write(`act: ${err.message}\n`);
      return err.exitCode;
    }
    throw err;
  }
}
