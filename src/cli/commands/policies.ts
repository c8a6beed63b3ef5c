/** `act policies create|list|get|update|delete`: from flags or a JSON/YAML file. */
import { readFileSync } from 'node:fs';
import { type Command } from 'commander';
import type { Kit } from '../context';
import type { Ctx } from '../context';
import { durationArg, list, repeat, required, seg } from '../context';
import { UsageError } from '../errors';
import { listItems, pagingOptions, printList, printOne, propagationLine, type Json } from './shared';

/** The fields a policy definition has (what POST and PUT accept). */
const INPUT_FIELDS = ['name', 'description', 'capabilities', 'constraints', 'conditions', 'approval_rules'];

const fields = (p: Json): [string, unknown][] => {
  const out: [string, unknown][] = [
    ['policy_id', p.policy_id],
    ['name', p.name],
    ['version', p.version],
    ['description', p.description],
    ['capabilities', ((p.capabilities as string[]) ?? []).join(', ')],
  ];
  const k = (p.constraints as Json | undefined) ?? {};
  if (k.max_actions_per_day) out.push(['max_actions_per_day', k.max_actions_per_day]);
  if (k.allowed_hours) out.push(['allowed_hours', k.allowed_hours]);
  if (k.rate_limit) out.push(['rate_limit', k.rate_limit]);
  if (k.timezone) out.push(['timezone', k.timezone]);
  for (const r of (p.conditions as Json[]) ?? []) out.push(['condition', ruleText(r)]);
  for (const r of (p.approval_rules as Json[]) ?? []) out.push(['approval_rule', ruleText(r)]);
  out.push(['created_at', p.created_at], ['updated_at', p.updated_at]);
  const prop = propagationLine(p.propagation as Json | undefined);
  if (prop) out.push(['propagation', prop]);
  return out;
};

function ruleText(r: Json): string {
  const acts = (r.actions as string[] | undefined) ?? [];
  return `${r.expression}${acts.length ? ` [${acts.join(', ')}]` : ''}${r.description ? ` — ${r.description}` : ''}`;
}

/** Reads a policy definition from a JSON or YAML file ("-" = standard input). */
export function readPolicyFile(file: string, stdin: () => string = () => readFileSync(0, 'utf8')): Json {
  let text: string;
  try {
    text = file === '-' ? stdin() : readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  let v: unknown;
  const asJson = /\.json$/i.test(file) || /^\s*\{/.test(text);
  try {
    // yaml is loaded only for a YAML file (it is a quarter of the CLI's code).
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    v = asJson ? JSON.parse(text) : (require('yaml') as typeof import('yaml')).parse(text);
  } catch (err) {
    throw new UsageError(
      `${file} is not valid ${asJson ? 'JSON' : 'YAML'}: ${(err as Error).message.split('\n')[0]}`,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new UsageError(`${file} must hold one policy object (name, capabilities, constraints, …)`);
  return v as Json;
}

/** Overlays the definition flags on a base definition (a file, or the current version). */
function applyFlags(base: Json, o: Json): Json {
  const p: Json = {};
  for (const f of INPUT_FIELDS) if (base[f] !== undefined) p[f] = base[f];
  if (o.name !== undefined) p.name = o.name;
  if (o.description !== undefined) p.description = o.description;
  if (o.capability) p.capabilities = o.capability;
  const c: Json = { ...((p.constraints as Json | undefined) ?? {}) };
  if (o.maxActionsPerDay !== undefined) {
    const n = Number(o.maxActionsPerDay);
    if (!Number.isInteger(n) || n < 0)
      throw new UsageError('--max-actions-per-day: expected an integer ≥ 0 (0 = unlimited)');
    c.max_actions_per_day = n;
  }
  if (o.allowedHours !== undefined) c.allowed_hours = o.allowedHours;
  if (o.rateLimit !== undefined) c.rate_limit = o.rateLimit;
  if (o.timezone !== undefined) c.timezone = o.timezone;
  if (Object.keys(c).length) p.constraints = c;
  if (o.condition) p.conditions = o.condition;
  if (o.approvalRule) p.approval_rules = o.approvalRule;
  return p;
}

function definitionOptions(cmd: Command): Command {
  return cmd
    .option(
      '-f, --file <file>',
      'policy definition, JSON or YAML ("-" reads standard input); flags override its fields',
    )
    .option('--name <name>', 'unique name')
    .option('--description <text>', 'free text')
    .option(
      '--capability <cap>',
      'granted capability verb:resource_type[:pattern] (repeatable, or comma-separated)',
      list,
    )
    .option('--max-actions-per-day <n>', 'daily maximum per agent (0 = unlimited)')
    .option(
      '--allowed-hours <window>',
      'e.g. "09:00-17:00 UTC", "Mon-Fri 09:00-17:00 Europe/Berlin" ("" = always)',
    )
    .option('--rate-limit <rate>', 'e.g. "100 per minute" ("" = unlimited)')
    .option('--timezone <zone>', "IANA zone of the daily maximum's day")
    .option(
      '--condition <cel>',
      'CEL condition that must hold, e.g. "context.amount <= 50000" (repeatable)',
      repeat,
    )
    .option(
      '--approval-rule <cel>',
      'CEL rule that requires a human approval when true (repeatable)',
      repeat,
    );
}

async function printPolicy(c: Ctx, p: Json): Promise<void> {
  await printOne(c, p, 'policy_id', fields(p));
}

export function registerPolicies(program: Command, k: Kit): void {
  const policies = program
    .command('policies')
    .description('capability policies: what tokens that name them may do');

  definitionOptions(policies.command('create').description('create a policy (POST /api/policies)'))
    .addHelpText(
      'after',
      `
Examples:
  act policies create --name "Customer Support Policy" \\
    --capability read:customer_profile,read:order_history,create:support_ticket,update:ticket_status \\
    --max-actions-per-day 1000 --allowed-hours "09:00-17:00 UTC" --rate-limit "100 per minute"
  act policies create --file billing.yaml

A file holds the REST body: name, description, capabilities, constraints
{max_actions_per_day, allowed_hours, rate_limit, timezone}, conditions and
approval_rules (CEL strings or {expression, actions, description} objects).`,
    )
    .action(
      k.action(async (c, o: Json) => {
        const body = applyFlags(o.file ? readPolicyFile(o.file as string) : {}, o);
        required(body.name, '--name (or "name" in --file)');
        required(body.capabilities as string[] | undefined, '--capability (or "capabilities" in --file)');
        await printPolicy(c, await c.api().json('POST', '/api/policies', { body }));
      }),
    );

  pagingOptions(
    policies
      .command('list')
      .description('list policies, newest first (GET /api/policies)')
      .option('--name-contains <text>', 'only names containing this (case-insensitive)'),
  ).action(
    k.action(async (c, o: Json) => {
      const r = await listItems(c, '/api/policies', 'policies', { name_contains: o.nameContains }, o);
      await printList(
        c,
        'policies',
        r,
        'policy_id',
        ['POLICY_ID', 'NAME', 'VERSION', 'CAPABILITIES', 'CONSTRAINTS'],
        (p) => [
          p.policy_id,
          p.name,
          p.version,
          p.capabilities,
          Object.entries((p.constraints as Json) ?? {})
            .filter(([, v]) => v !== '' && v !== 0)
            .map(([key, v]) => `${key}=${v}`)
            .join('; '),
        ],
      );
    }),
  );

  policies
    .command('get')
    .description('show one policy (GET /api/policies/{id})')
    .argument('<policy-id>', 'policy_…')
    .action(
      k.action(async (c, id: string) =>
        printPolicy(c, await c.api().json('GET', `/api/policies/${seg(id)}`)),
      ),
    );

  definitionOptions(
    policies
      .command('update')
      .description('make a new version of a policy; it applies at once (PUT /api/policies/{id})')
      .argument('<policy-id>', 'policy_…'),
  )
    .option('--wait <duration>', 'wait until connected sidecars applied it, e.g. 5s', durationArg)
    .addHelpText(
      'after',
      `
With --file the file is the whole new definition; without, the current version
is fetched and the flags change it (e.g. --rate-limit "50 per minute").
With --wait the answer says how many connected sidecars applied the new version.`,
    )
    .action(
      k.action(async (c, id: string, o: Json) => {
        const api = c.api();
        const base = o.file
          ? readPolicyFile(o.file as string)
          : await api.json('GET', `/api/policies/${seg(id)}`);
        const body = applyFlags(base, o);
        const p = await api.json('PUT', `/api/policies/${seg(id)}`, { body, query: { wait: o.wait } });
        await printPolicy(c, p);
        if (o.wait && !p.propagation && !c.out.json)
          c.out.note('act: the control plane did not report propagation (it does not support --wait yet)');
      }),
    );

  policies
    .command('delete')
    .description('delete a policy; tokens naming it lose its grants (DELETE /api/policies/{id})')
    .argument('<policy-id>', 'policy_…')
    .option('--wait <duration>', 'wait until connected sidecars applied it, e.g. 5s', durationArg)
    .action(
      k.action(async (c, id: string, o: Json) => {
        const r = await c.api().json('DELETE', `/api/policies/${seg(id)}`, { query: { wait: o.wait } });
        if (c.out.json) return c.out.printJson(r);
        await c.out.say(c.out.quiet ? `${r.id}\n` : `deleted ${r.id}\n`);
        const prop = propagationLine(r.propagation as Json | undefined);
        if (prop && !c.out.quiet) await c.out.say(`propagation: ${prop}\n`);
      }),
    );
}
