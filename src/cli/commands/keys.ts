/** `act keys list|rotate`: the control plane's Ed25519 signing keys. */
import type { Command } from 'commander';
import type { Kit } from '../context';
import { printList, printOne, type Json } from './shared';

export function registerKeys(program: Command, k: Kit): void {
  const keys = program.command('keys').description('token signing keys (admin role)');
  keys
    .command('list')
    .description('list signing keys, newest first (GET /api/keys)')
    .action(
      k.action(async (c) => {
        const r = await c.api().json('GET', '/api/keys');
        if (c.out.json) return c.out.printJson(r);
        await printList(
          c,
          'keys',
          { items: (r.keys as Json[]) ?? [], next: '' },
          'key_id',
          ['KEY_ID', 'ACTIVE', 'CREATED', 'PUBLIC_KEY'],
          (x) => [x.key_id, x.active ? 'yes' : 'no', x.created_at, x.public_key],
        );
      }),
    );
  keys
    .command('rotate')
    .description(
      'make a new signing key; new tokens use it, old keys verify until their tokens expire (POST /api/keys/rotate)',
    )
    .action(
      k.action(async (c) => {
        const r = await c.api().json('POST', '/api/keys/rotate');
        await printOne(c, r, 'key_id', [
          ['key_id', r.key_id],
          ['active', r.active ? 'yes' : 'no'],
          ['created_at', r.created_at],
          ['public_key', r.public_key],
        ]);
      }),
    );
}
