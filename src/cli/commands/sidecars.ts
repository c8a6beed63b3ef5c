/** `act sidecars list`: which sidecars are connected and how far their replicas are. */
import type { Command } from 'commander';
import type { Kit } from '../context';
import { printList, type Json } from './shared';

export function registerSidecars(program: Command, k: Kit): void {
  const sidecars = program
    .command('sidecars')
    .description('the sidecars that sync from this control plane (admin role)');
  sidecars
    .command('list')
    .description('list sidecars, most recently seen first (GET /api/sidecars)')
    .option('--all', 'also sidecars not connected now (seen within 24 hours)')
    .action(
      k.action(async (c, o: Json) => {
        const r = await c
          .api()
          .json('GET', '/api/sidecars', { query: { include_disconnected: o.all ? 'true' : undefined } });
        if (c.out.json) return c.out.printJson(r);
        await printList(
          c,
          'sidecars',
          { items: (r.sidecars as Json[]) ?? [], next: '' },
          'sidecar_id',
          ['SIDECAR_ID', 'CONNECTED', 'APPLIED', 'LAG', 'LAST_CONTACT', 'AGENTS', 'VERSION'],
          (s) => [
            s.sidecar_id,
            s.connected ? 'yes' : 'no',
            s.applied_revision,
            s.lag_revisions,
            s.last_contact,
            s.agent_ids,
            s.version,
          ],
        );
        if (!c.out.quiet) c.out.note(`control-plane revision ${r.revision}`);
      }),
    );
}
