/** `act audit query|export|follow|verify`. */
import { createWriteStream, renameSync, rmSync } from 'node:fs';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { SingleBar } from 'cli-progress';
import { Option, type Command } from 'commander';
import type { Kit } from '../context';
import type { Ctx } from '../context';
import { timeArg } from '../context';
import { readExportFile, readNdjson, verifyRecords } from '../audit-verify';
import { CliError, EXIT, UnreachableError } from '../errors';
import { listItems, printList, type Json } from './shared';
import { positiveInt } from '../context';

const DECISIONS = ['ALLOW', 'DENY', 'APPROVAL_REQUIRED'];

function filterOptions(cmd: Command, withTime = true): Command {
  cmd
    .option('--agent <agent-id>', 'only this agent')
    .option('--token-id <token-id>', 'only this token')
    .option('--action <action>', 'only this action, e.g. read:customer_profile')
    .addOption(new Option('--decision <decision>', 'only this decision').choices(DECISIONS))
    .option('--reason-code <code>', 'only this reason code, e.g. OUTSIDE_ALLOWED_HOURS');
  if (withTime)
    cmd
      .option('--since <time>', 'from this RFC 3339 time, or a duration ago (1h, 7d)', timeArg)
      .option('--until <time>', 'before this RFC 3339 time, or a duration ago', timeArg);
  return cmd;
}

function filterQuery(o: Json): Record<string, string | undefined> {
  return {
    agent_id: o.agent,
    token_id: o.tokenId,
    action: o.action,
    decision: o.decision,
    reason_code: o.reasonCode,
    since: o.since,
    until: o.until,
  };
}

/** One line per record for `follow` and `query`-like views. */
function recordLine(r: Json): string {
  return [
    r.time,
    String(r.decision).padEnd(17),
    String(r.reason_code).padEnd(22),
    r.agent_id || '-',
    `${r.action}${r.resource ? ` ${r.resource}` : ''}`,
    r.source,
  ].join('  ');
}

function body(res: Response): AsyncIterable<Uint8Array> {
  return Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>);
}

/** Counts records going by in an export's bytes (for the progress line only). */
class RecordCounter {
  records = 0;
  bytes = 0;
  private tail = '';
  constructor(private readonly format: string) {}
  add(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    const s = this.tail + Buffer.from(chunk).toString('latin1');
    const needle = this.format === 'json' ? '"audit_id":' : '\n';
    let i = s.indexOf(needle);
    while (i !== -1) {
      this.records++;
      i = s.indexOf(needle, i + needle.length);
    }
    this.tail = this.format === 'json' ? s.slice(-(needle.length - 1)) : '';
  }
  get count(): number {
    return this.format === 'csv' ? Math.max(0, this.records - 1) : this.records;
  }
}

function size(n: number): string {
  return n < 1024
    ? `${n} B`
    : n < 1024 * 1024
      ? `${(n / 1024).toFixed(1)} KiB`
      : `${(n / 1048576).toFixed(1)} MiB`;
}

async function exportTo(c: Ctx, res: Response, format: string, file: string | undefined): Promise<void> {
  if (!file) {
    for await (const chunk of body(res)) await c.out.write(chunk);
    return;
  }
  // Written beside the target and renamed at the end: a failed export leaves no truncated file behind.
  const partial = `${file}.partial`;
  const out = createWriteStream(partial, { mode: 0o600 });
  const opened = new Promise<void>((resolve, reject) =>
    out.once('open', () => resolve()).once('error', reject),
  );
  const counter = new RecordCounter(format);
  const tty = Boolean((process.stderr as NodeJS.WriteStream).isTTY) && !c.out.quiet;
  const bar = tty
    ? new SingleBar({
        format: `exporting to ${file}: {records} records, {size}`,
        stream: process.stderr,
        fps: 5,
        hideCursor: true,
        clearOnComplete: false,
      })
    : undefined;
  try {
    await opened.catch((err: Error) => {
      throw new CliError(`cannot write ${file}: ${err.message}`, EXIT.USAGE);
    });
    bar?.start(0, 0, { records: 0, size: '0 B' });
    for await (const chunk of body(res)) {
      counter.add(chunk);
      if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      bar?.update(0, { records: counter.count, size: size(counter.bytes) });
    }
    await new Promise<void>((resolve, reject) =>
      out.end((err?: Error | null) => (err ? reject(err) : resolve())),
    );
    renameSync(partial, file);
    bar?.update(0, { records: counter.count, size: size(counter.bytes) });
    bar?.stop();
  } catch (err) {
    bar?.stop();
    out.destroy();
    rmSync(partial, { force: true });
    if (err instanceof CliError) throw err;
    if ((err as NodeJS.ErrnoException).code?.startsWith('E') && (err as NodeJS.ErrnoException).syscall)
      throw new CliError(`cannot write ${file}: ${(err as Error).message}`, EXIT.USAGE);
    throw new UnreachableError(`the export stream broke off: ${(err as Error).message}`);
  }
}

export function registerAudit(program: Command, k: Kit): void {
  const audit = program
    .command('audit')
    .description('the audit trail: every check, allowed or denied (auditor role)');

  filterOptions(audit.command('query').description('query the audit trail, newest first (GET /api/audit)'))
    .addOption(new Option('--limit <n>', 'records per page (1-1000, default 100)').argParser(positiveInt))
    .option('--cursor <cursor>', 'continue from a previous page')
    .option('--all', 'every page (mind the size)')
    .action(
      k.action(async (c, o: Json) => {
        const r = await listItems(c, '/api/audit', 'records', filterQuery(o), o);
        await printList(
          c,
          'records',
          r,
          'audit_id',
          ['TIME', 'DECISION', 'REASON_CODE', 'AGENT_ID', 'ACTION', 'RESOURCE', 'SOURCE', 'AUDIT_ID'],
          (x) => [x.time, x.decision, x.reason_code, x.agent_id, x.action, x.resource, x.source, x.audit_id],
        );
      }),
    );

  filterOptions(
    audit.command('export').description('stream the audit trail, oldest first (GET /api/audit/export)'),
  )
    .addOption(
      new Option('--format <format>', 'output format').choices(['csv', 'json', 'ndjson']).default('ndjson'),
    )
    .option(
      '-o, --output <file>',
      'write to this file (a progress line shows on a terminal) instead of stdout',
    )
    .addHelpText(
      'after',
      '\nExamples:\n  act audit export --format csv --output audit.csv\n  act audit export --since 24h --decision DENY | head\n  act audit export --format ndjson > trail.ndjson && act audit verify --file trail.ndjson',
    )
    .action(
      k.action(async (c, o: Json) => {
        const api = c.api();
        const path = '/api/audit/export';
        const res = await api.raw('GET', path, { query: { format: o.format, ...filterQuery(o) } });
        if (!res.ok) throw await api.apiError(res, 'GET', path, 'key');
        await exportTo(c, res, o.format as string, o.output as string | undefined);
      }),
    );

  filterOptions(
    audit
      .command('follow')
      .description('print new records as they arrive, until Ctrl-C (GET /api/audit/follow)'),
    false,
  )
    .addHelpText('after', '\nWith --json each record is one NDJSON line (for a SIEM shipper).')
    .action(
      k.action(async (c, o: Json) => {
        const api = c.api();
        const path = '/api/audit/follow';
        const res = await api.raw('GET', path, { query: filterQuery(o) });
        if (!res.ok) throw await api.apiError(res, 'GET', path, 'key');
        c.out.note(`following the audit trail at ${api.conn.url} (Ctrl-C stops)`);
        try {
          for await (const r of readNdjson(
            Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>),
            'the follow stream',
          ))
            await (c.out.json ? c.out.write(JSON.stringify(r) + '\n') : c.out.say(recordLine(r) + '\n'));
        } catch (err) {
          if (err instanceof CliError) throw err;
          throw new UnreachableError(`the follow stream broke off: ${(err as Error).message}`);
        }
        throw new UnreachableError(`the control plane at ${api.conn.url} closed the follow stream`);
      }),
    );

  audit
    .command('verify')
    .description("check every source's hash chain (seq, prev_hash, hash), live or in an export file")
    .option('--file <file>', 'an export to check (NDJSON or JSON array) instead of the live trail')
    .addHelpText(
      'after',
      '\nExit status: 0 every chain verifies, 1 a problem was found, 2 the file is not an NDJSON or JSON export.',
    )
    .action(
      k.action(async (c, o: Json) => {
        let records: AsyncIterable<Record<string, unknown>>;
        if (o.file) records = readExportFile(o.file as string);
        else {
          const api = c.api();
          const path = '/api/audit/export';
          const res = await api.raw('GET', path, { query: { format: 'ndjson' } });
          if (!res.ok) throw await api.apiError(res, 'GET', path, 'key');
          records = readNdjson(
            Readable.fromWeb(res.body as unknown as WebReadableStream<Uint8Array>),
            'the export',
          );
        }
        const r = await verifyRecords(records);
        const bad = r.sources.reduce((n, s) => n + s.problems.length, 0);
        if (c.out.json) await c.out.printJson({ records: r.total, problems: bad, sources: r.sources });
        else {
          let text = '';
          for (const s of r.sources) {
            text += `${s.problems.length === 0 ? 'ok  ' : 'FAIL'} ${s.source}: ${s.records} records, seq ${s.firstSeq}..${s.lastSeq}\n`;
            for (const p of s.problems.slice(0, 20))
              text += `     ${p.audit_id} seq ${p.seq}: ${p.problem}\n`;
            if (s.problems.length > 20) text += `     … ${s.problems.length - 20} more\n`;
          }
          text += `${r.total} records, ${r.sources.length} sources, ${bad} problems\n`;
          await c.out.say(text);
        }
        return bad === 0 ? EXIT.OK : EXIT.API;
      }),
    );
}
