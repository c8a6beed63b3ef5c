/** Helpers the command modules share: paging, id output, propagation receipts. */
import { Option, type Command } from 'commander';
import type { Ctx } from '../context';
import { positiveInt } from '../context';

export type Json = Record<string, any>;

/** --limit, --cursor, --all on a list verb. */
export function pagingOptions(cmd: Command, max = 500): Command {
  return cmd
    .addOption(new Option('--limit <n>', `page size (1-${max})`).argParser(positiveInt))
    .option('--cursor <cursor>', 'continue from a previous page (printed on stderr when there is more)')
    .option('--all', 'fetch every page');
}

/** Fetches one page, or every page with --all; items under `key`. */
export async function listItems(
  c: Ctx,
  path: string,
  key: string,
  query: Record<string, string | number | boolean | undefined>,
  o: { limit?: number; cursor?: string; all?: boolean },
): Promise<{ items: Json[]; next: string }> {
  const api = c.api();
  const items: Json[] = [];
  let cursor = o.cursor ?? '';
  for (;;) {
    const page = await api.json<Json>('GET', path, {
      query: { ...query, limit: o.limit ?? (o.all ? 500 : undefined), cursor: cursor || undefined },
    });
    items.push(...((page[key] as Json[] | undefined) ?? []));
    cursor = (page.next_cursor as string | undefined) ?? '';
    if (!o.all || !cursor) return { items, next: cursor };
  }
}

/** Prints a list: JSON (`{key: [...], next_cursor}`), ids, or a table with a next-page hint. */
export async function printList(
  c: Ctx,
  key: string,
  r: { items: Json[]; next: string },
  idField: string,
  headers: string[],
  row: (x: Json) => unknown[],
): Promise<void> {
  if (c.out.json) return c.out.printJson({ [key]: r.items, next_cursor: r.next });
  if (c.out.quiet) return c.out.say(r.items.map((x) => `${x[idField]}\n`).join(''));
  if (r.items.length === 0) c.out.note(`no ${key.replace(/_/g, ' ')}`);
  else await c.out.table(headers, r.items.map(row));
  if (r.next) c.out.note(`more: add --cursor ${r.next} (or --all)`);
}

/** Prints one object: JSON, its id, or its fields. */
export async function printOne(c: Ctx, v: Json, idField: string, fields: [string, unknown][]): Promise<void> {
  if (c.out.json) return c.out.printJson(v);
  if (c.out.quiet) return c.out.say(`${v[idField]}\n`);
  return c.out.fields(fields);
}

/** "applied 2 of 3 sidecars; pending: sc-a" for a propagation receipt. */
export function propagationLine(p: Json | undefined): string | undefined {
  if (!p) return undefined;
  const total = Number(p.total ?? 0);
  const applied = Number(p.applied ?? 0);
  const waited = p.waited_ms !== undefined ? `, waited ${p.waited_ms} ms` : '';
  if (total === 0 && !((p.disconnected_sidecar_ids as string[] | undefined) ?? []).length)
    return `no connected sidecar holds it (revision ${p.revision}${waited})`;
  const pending = (p.pending_sidecar_ids as string[] | undefined) ?? [];
  // Cut off without a goodbye: they may still decide from their replica until it goes stale.
  const cut = (p.disconnected_sidecar_ids as string[] | undefined) ?? [];
  return `applied ${applied} of ${total} sidecar${total === 1 ? '' : 's'}${
    pending.length ? `; pending: ${pending.join(', ')}` : ''
  }${cut.length ? `; cut off (may still decide until stale): ${cut.join(', ')}` : ''} (revision ${p.revision}${waited})`;
}
