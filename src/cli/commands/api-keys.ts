/** `act api-keys create|list|delete`: bearer keys with a role. */
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { Kit } from '../context';
import { list, required, seg } from '../context';
import { printList, type Json } from './shared';

const ROLES = ['ADMIN', 'APPROVER', 'AUDITOR', 'SIDECAR'];

export function registerApiKeys(program: Command, k: Kit): void {
  const keys = program
    .command('api-keys')
    .description('API keys with roles ADMIN, APPROVER, AUDITOR, SIDECAR (admin role)');
  keys
    .command('create')
    .description('create an API key; its secret is printed once (POST /api/api-keys)')
    .option('--name <name>', 'a name for humans, recorded as resolved_by on approvals (required)')
    .addOption(
      new Option('--role <role>', `${ROLES.join(', ')} (required)`).argParser((v: string) => {
        const up = v.toUpperCase();
        if (!ROLES.includes(up)) throw new InvalidArgumentError(`Allowed choices are ${ROLES.join(', ')}.`);
        return up;
      }),
    )
    .option('--agent <agent-id>', 'SIDECAR keys: only these agents (repeatable, or comma-separated)', list)
    .addHelpText(
      'after',
      '\nExample:\n  act api-keys create --name "demo sidecar" --role SIDECAR -q > sidecar.key',
    )
    .action(
      k.action(async (c, o: Json) => {
        const body: Json = { name: required(o.name, '--name'), role: required(o.role, '--role') };
        if (o.agent) body.agent_ids = o.agent;
        const r = await c.api().json('POST', '/api/api-keys', { body });
        if (c.out.json) return c.out.printJson(r);
        if (c.out.quiet) return c.out.say(`${r.secret}\n`);
        const a = r.api_key as Json;
        await c.out.fields([
          ['api_key_id', a.api_key_id],
          ['name', a.name],
          ['role', a.role],
          ['agent_ids', a.agent_ids],
          ['secret', r.secret],
        ]);
        c.out.note('The secret is shown once: store it now.');
      }),
    );
  keys
    .command('list')
    .description('list API keys (never their secrets) (GET /api/api-keys)')
    .action(
      k.action(async (c) => {
        const r = await c.api().json('GET', '/api/api-keys');
        if (c.out.json) return c.out.printJson(r);
        await printList(
          c,
          'api_keys',
          { items: (r.api_keys as Json[]) ?? [], next: '' },
          'api_key_id',
          ['API_KEY_ID', 'NAME', 'ROLE', 'AGENT_IDS', 'CREATED'],
          (x) => [x.api_key_id, x.name, x.role, x.agent_ids, x.created_at],
        );
      }),
    );
  keys
    .command('delete')
    .description('delete (revoke) an API key (DELETE /api/api-keys/{id})')
    .argument('<api-key-id>', 'ak_…')
    .action(
      k.action(async (c, id: string) => {
        const r = await c.api().json('DELETE', `/api/api-keys/${seg(id)}`);
        if (c.out.json) return c.out.printJson(r);
        await c.out.say(c.out.quiet ? `${r.id}\n` : `deleted ${r.id}\n`);
      }),
    );
}
