/**
 * `act audit verify`: checks the per-source hash chains of an audit trail, read
 * from the control plane's NDJSON export or from an export file (NDJSON or a
 * JSON array; a CSV export lacks what the hashes cover and is refused).
 */
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { verifyChain } from '../audit/chain';
import { AuditRecord } from '../gen/act/v1/admin';
import { Decision, ReasonCode } from '../gen/act/v1/decision';
import { UsageError } from './errors';

/** Turns an exported record (enums as names) back into the wire form the hash covers. */
export function fromExportJson(j: Record<string, unknown>): AuditRecord {
  return AuditRecord.fromPartial({
    ...(j as Partial<AuditRecord>),
    decision: Decision[j.decision as keyof typeof Decision] ?? 0,
    reason_code: ReasonCode[j.reason_code as keyof typeof ReasonCode] ?? 0,
  });
}

export type ExportFormat = 'ndjson' | 'json';

/** Tells an export file's format from its first bytes; throws for anything else. */
export async function sniffExportFile(file: string): Promise<ExportFormat | 'empty'> {
  let head: string;
  try {
    const fh = await open(file, 'r');
    try {
      const buf = Buffer.alloc(4096);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      head = buf
        .subarray(0, bytesRead)
        .toString('utf8')
        .replace(/^\uFEFF/, '');
    } finally {
      await fh.close();
    }
  } catch (err) {
    throw new UsageError(`cannot read ${file}: ${(err as Error).message}`);
  }
  const t = head.trimStart();
  if (t === '') return 'empty';
  if (t.startsWith('[')) return 'json';
  if (t.startsWith('{')) return 'ndjson';
  if (t.startsWith('audit_id,'))
    throw new UsageError(
      `${file} is a CSV export, which cannot be verified (its columns do not carry every hashed field); export with --format ndjson or json`,
    );
  throw new UsageError(
    `${file} is not an audit export (expected NDJSON or a JSON array from act audit export)`,
  );
}

/** Records of an export file, in file order. */
export async function* readExportFile(file: string): AsyncGenerator<Record<string, unknown>> {
  const format = await sniffExportFile(file);
  if (format === 'empty') return;
  if (format === 'json') {
    const chunks: Buffer[] = [];
    for await (const c of createReadStream(file)) chunks.push(c as Buffer);
    let v: unknown;
    try {
      v = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch (err) {
      throw new UsageError(`${file} looks like a JSON export but does not parse: ${(err as Error).message}`);
    }
    if (!Array.isArray(v)) throw new UsageError(`${file}: a JSON export is an array of records`);
    for (const r of v) yield r as Record<string, unknown>;
    return;
  }
  yield* readNdjson(createReadStream(file), file);
}

/** Records of an NDJSON stream (blank lines skipped). */
export async function* readNdjson(input: Readable, what: string): AsyncGenerator<Record<string, unknown>> {
  let n = 0;
  for await (const line of createInterface({ input, crlfDelay: Infinity })) {
    n++;
    if (!line.trim()) continue;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new UsageError(`${what}: line ${n} is not JSON${n === 1 ? '' : ' (a truncated export?)'}`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new UsageError(`${what}: line ${n} is not an audit record`);
    yield v as Record<string, unknown>;
  }
}

export interface SourceReport {
  source: string;
  records: number;
  firstSeq: number;
  lastSeq: number;
  problems: { audit_id: string; seq: number; problem: string }[];
}

/** Groups records by source and verifies each chain. */
export async function verifyRecords(
  records: AsyncIterable<Record<string, unknown>>,
): Promise<{ total: number; sources: SourceReport[] }> {
  const bySource = new Map<string, AuditRecord[]>();
  let total = 0;
  for await (const j of records) {
    const r = fromExportJson(j);
    const list = bySource.get(r.source) ?? [];
    list.push(r);
    bySource.set(r.source, list);
    total++;
  }
  const sources: SourceReport[] = [];
  for (const [source, list] of bySource) {
    list.sort((a, b) => a.seq - b.seq);
    // An export may start after a source's first records were pruned; start from the first record's link.
    const first = list[0]!;
    const start = first.seq === 1 ? { seq: 0, hash: '' } : { seq: first.seq - 1, hash: first.prev_hash };
    sources.push({
      source,
      records: list.length,
      firstSeq: first.seq,
      lastSeq: list[list.length - 1]!.seq,
      problems: verifyChain(list, start),
    });
  }
  return { total, sources };
}
