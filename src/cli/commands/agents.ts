/** `act agents create|list|get|update|disable|enable|delete`. */
import { Option, type Command } from 'commander';
import type { Kit } from '../context';
import { keyValue, required, seg } from '../context';
import { pagingOptions, listItems, printList, printOne, type Json } from './shared';

const fields = (a: Json): [string, unknown][] => [
  ['agent_id', a.agent_id],
  ['name', a.name],
  ['status', a.status],
  ['description', a.description],
  ['metadata', a.metadata],
  ['created_at', a.created_at],
  ['updated_at', a.updated_at],
];

export function registerAgents(program: Command, k: Kit): void {
  const agents = program
    .command('agents')
    .description('register and manage agents (the identities tokens are issued to)');

  agents
    .command('create')
    .description('register an agent (POST /api/agents)')
    .option('--name <name>', 'unique name (required)')
    .option('--description <text>', 'free text')
    .option('--metadata <key=value>', 'metadata entry (repeatable)', keyValue)
    .addHelpText(
      'after',
      '\nExample:\n  act agents create --name "Customer Support Agent" --description "Handles tier-1 customer inquiries" \\\n    --metadata team=customer-success --metadata environment=production',
    )
    .action(
      k.action(async (c, o: Json) => {
        const body: Json = { name: required(o.name, '--name') };
        if (o.description !== undefined) body.description = o.description;
        if (o.metadata) body.metadata = o.metadata;
        const a = await c.api().json('POST', '/api/agents', { body });
        await printOne(c, a, 'agent_id', fields(a));
      }),
    );

  pagingOptions(
    agents
      .command('list')
      .description('list agents, newest first (GET /api/agents)')
      .addOption(new Option('--status <status>', 'only this status').choices(['ACTIVE', 'DISABLED']))
      .option('--name-contains <text>', 'only names containing this (case-insensitive)'),
  ).action(
    k.action(async (c, o: Json) => {
      const r = await listItems(
        c,
        '/api/agents',
        'agents',
        { status: o.status, name_contains: o.nameContains },
        o,
      );
      await printList(
        c,
        'agents',
        r,
        'agent_id',
        ['AGENT_ID', 'NAME', 'STATUS', 'CREATED', 'DESCRIPTION'],
        (a) => [a.agent_id, a.name, a.status, a.created_at, a.description],
      );
    }),
  );

  agents
    .command('get')
    .description('show one agent (GET /api/agents/{id})')
    .argument('<agent-id>', 'agent_…')
    .action(
      k.action(async (c, id: string) => {
        const a = await c.api().json('GET', `/api/agents/${seg(id)}`);
        await printOne(c, a, 'agent_id', fields(a));
      }),
    );

  agents
    .command('update')
    .description("change an agent's description or metadata (PATCH /api/agents/{id})")
    .argument('<agent-id>', 'agent_…')
    .option('--description <text>', 'new description')
    .option('--metadata <key=value>', 'metadata entry (repeatable; replaces all metadata)', keyValue)
    .action(
      k.action(async (c, id: string, o: Json) => {
        const body: Json = {};
        if (o.description !== undefined) body.description = o.description;
        if (o.metadata) body.metadata = o.metadata;
        if (Object.keys(body).length === 0)
          required(undefined, '--description or --metadata (nothing to change)');
        const a = await c.api().json('PATCH', `/api/agents/${seg(id)}`, { body });
        await printOne(c, a, 'agent_id', fields(a));
      }),
    );

  for (const [verb, what] of [
    ['disable', 'checks with its tokens are denied (AGENT_DISABLED) until enabled again'],
    ['enable', 'its tokens work again'],
  ] as const)
    agents
      .command(verb)
      .description(`${verb} an agent: ${what} (POST /api/agents/{id}/${verb})`)
      .argument('<agent-id>', 'agent_…')
      .action(
        k.action(async (c, id: string) => {
          const a = await c.api().json('POST', `/api/agents/${seg(id)}/${verb}`);
          await printOne(c, a, 'agent_id', fields(a));
        }),
      );

  agents
    .command('delete')
    .description('delete an agent and revoke all its tokens (DELETE /api/agents/{id})')
    .argument('<agent-id>', 'agent_…')
    .action(
      k.action(async (c, id: string) => {
        const r = await c.api().json('DELETE', `/api/agents/${seg(id)}`);
        if (c.out.json) return c.out.printJson(r);
        if (c.out.quiet) return c.out.say(`${r.id}\n`);
        const revoked = (r.revoked_token_ids as string[]) ?? [];
        await c.out.say(
          `deleted ${r.id}${revoked.length ? `; revoked ${revoked.length} token(s): ${revoked.join(', ')}` : ''}\n`,
        );
      }),
    );
}
