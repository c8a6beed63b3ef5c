/**
 * `act <noun> <verb>`: operator commands over the control plane's REST API.
 * Exit codes: 0 success, 1 failure reported by the server or a failed check,
 * 2 usage error, 3 cannot reach the control plane.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { verifyChain } from '../audit/chain';
import { AuditRecord } from '../gen/act/v1/admin';
import { Decision, ReasonCode } from '../gen/act/v1/decision';
import { ConfigError, parseOptions, renderHelp, str, type Specs } from '../common/options';

const CLIENT_OPTIONS = {
  url: {
    flag: '--url',
    env: 'ACT_URL',
    default: 'http://127.0.0.1:8700',
    parse: str,
    help: 'control-plane REST base URL',
  },
  key: {
    flag: '--key',
    env: 'ACT_KEY',
    default: undefined,
    parse: str,
    secret: true,
    help: 'API key (falls back to ACT_ADMIN_KEY)',
  },
} satisfies Specs;

const COMMANDS: Record<
  string,
  {
    usage: string;
    summary: string;
    extra?: Specs;
    run: (o: Opts, rest: Record<string, string>) => Promise<number>;
  }
> = {
  'keys list': {
    usage: 'act keys list',
    summary: 'Lists signing keys (newest first).',
    run: (o) => print(o, 'GET', '/api/keys'),
  },
  'keys rotate': {
    usage: 'act keys rotate',
    summary:
      'Generates a new signing key; new tokens use it, old keys keep verifying until their tokens expire.',
    run: (o) => print(o, 'POST', '/api/keys/rotate'),
  },
  'tokens revoke': {
    usage: 'act tokens revoke --token-id tok_... [--reason TEXT]',
    summary: 'Revokes a token and every token derived from it.',
    extra: {
      tokenId: {
        flag: '--token-id',
        env: 'ACT_TOKEN_ID',
        default: undefined,
        parse: str,
        help: 'the token id to revoke',
      },
      reason: {
        flag: '--reason',
        env: 'ACT_REVOKE_REASON',
        default: '',
        parse: str,
        help: 'recorded reason',
      },
    },
    run: async (o, x) => {
      if (!x.tokenId) return usageError('--token-id is required');
      return print(o, 'POST', `/api/tokens/${encodeURIComponent(x.tokenId)}/revoke`, { reason: x.reason });
    },
  },
  'api-keys create': {
    usage: 'act api-keys create --name NAME --role ADMIN|APPROVER|AUDITOR|SIDECAR',
    summary: 'Creates an API key; its secret is printed once.',
    extra: {
      name: {
        flag: '--name',
        env: 'ACT_API_KEY_NAME',
        default: undefined,
        parse: str,
        help: 'a name for humans',
      },
      role: {
        flag: '--role',
        env: 'ACT_API_KEY_ROLE',
        default: undefined,
        parse: str,
        help: 'ADMIN, APPROVER, AUDITOR or SIDECAR',
      },
    },
    run: (o, x) => print(o, 'POST', '/api/api-keys', { name: x.name, role: x.role }),
  },
  'audit export': {
    usage: 'act audit export [--format csv|json|ndjson] [--agent-id ID] [--since T] [--until T]',
    summary: 'Streams the audit trail to standard output.',
    extra: {
      format: {
        flag: '--format',
        env: 'ACT_EXPORT_FORMAT',
        default: 'ndjson',
        parse: str,
        help: 'csv, json or ndjson',
      },
      agentId: {
        flag: '--agent-id',
        env: 'ACT_EXPORT_AGENT',
        default: undefined,
        parse: str,
        help: 'only this agent',
      },
      since: {
        flag: '--since',
        env: 'ACT_EXPORT_SINCE',
        default: undefined,
        parse: str,
        help: 'RFC 3339 lower bound',
      },
      until: {
        flag: '--until',
        env: 'ACT_EXPORT_UNTIL',
        default: undefined,
        parse: str,
        help: 'RFC 3339 upper bound',
      },
    },
    run: async (o, x) => {
      const q = new URLSearchParams({ format: x.format ?? 'ndjson' });
      if (x.agentId) q.set('agent_id', x.agentId);
      if (x.since) q.set('since', x.since);
      if (x.until) q.set('until', x.until);
      const res = await request(o, 'GET', `/api/audit/export?${q}`);
      if (!res.ok) return failed(res);
      await streamTo(res, process.stdout);
      return 0;
    },
  },
  'audit verify': {
    usage: 'act audit verify [--file export.ndjson]',
    summary:
      'Checks the per-source hash chains of the audit trail (from the control plane, or an NDJSON export file): every record of a source must follow the previous one (seq, prev_hash) and hash to its stored hash.',
    extra: {
      file: {
        flag: '--file',
        env: 'ACT_AUDIT_FILE',
        default: undefined,
        parse: str,
        help: 'an NDJSON export to check instead of the live trail',
      },
    },
    run: async (o, x) => {
      let lines: AsyncIterable<string>;
      if (x.file) lines = createInterface({ input: createReadStream(x.file) });
      else {
        const res = await request(o, 'GET', '/api/audit/export?format=ndjson');
        if (!res.ok) return failed(res);
        lines = createInterface({
          input: Readable.fromWeb(res.body as import('node:stream/web').ReadableStream),
        });
      }
      const bySource = new Map<string, AuditRecord[]>();
      let n = 0;
      for await (const line of lines) {
        if (!line.trim()) continue;
        const r = fromExportJson(JSON.parse(line) as Record<string, unknown>);
        const list = bySource.get(r.source) ?? [];
        list.push(r);
        bySource.set(r.source, list);
        n++;
      }
      let bad = 0;
      for (const [source, records] of bySource) {
        records.sort((a, b) => a.seq - b.seq);
        // An export may start after a source's first records were pruned; start from the first record's link.
        const first = records[0]!;
        const start = first.seq === 1 ? { seq: 0, hash: '' } : { seq: first.seq - 1, hash: first.prev_hash };
        const problems = verifyChain(records, start);
        bad += problems.length;
        process.stdout.write(
          `${problems.length === 0 ? 'ok  ' : 'FAIL'} ${source}: ${records.length} records, seq ${first.seq}..${records[records.length - 1]!.seq}\n`,
        );
        for (const p of problems.slice(0, 20))
          process.stdout.write(`     ${p.audit_id} seq ${p.seq}: ${p.problem}\n`);
      }
      process.stdout.write(`${n} records, ${bySource.size} sources, ${bad} problems\n`);
      return bad === 0 ? 0 : 1;
    },
  },
};

type Opts = { url: string; key: string | undefined };

/** Turns an exported record (enums as names) back into the wire form the hash covers. */
export function fromExportJson(j: Record<string, unknown>): AuditRecord {
  return AuditRecord.fromPartial({
    ...(j as Partial<AuditRecord>),
    decision: Decision[j.decision as keyof typeof Decision] ?? 0,
    reason_code: ReasonCode[j.reason_code as keyof typeof ReasonCode] ?? 0,
  });
}

export async function runCli(noun: string, argv: string[]): Promise<number> {
  const [verb, ...args] = argv;
  const cmd = COMMANDS[`${noun} ${verb ?? ''}`];
  if (!cmd) {
    const list = Object.values(COMMANDS)
      .map((c) => `  ${c.usage}`)
      .join('\n');
    process.stderr.write(`act ${noun}: unknown command${verb ? ` ${verb}` : ''}\n\nCommands:\n${list}\n`);
    return 2;
  }
  const specs = { ...CLIENT_OPTIONS, ...(cmd.extra ?? {}) };
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(renderHelp(`${cmd.usage} [--url URL] [--key KEY]`, cmd.summary, specs));
    return 0;
  }
  let values: Record<string, unknown>;
  try {
    values = parseOptions(specs, args, process.env);
  } catch (err) {
    if (err instanceof ConfigError) return usageError(err.message);
    throw err;
  }
  const o: Opts = {
    url: String(values.url).replace(/\/$/, ''),
    key: (values.key as string | undefined) ?? process.env.ACT_ADMIN_KEY,
  };
  try {
    return await cmd.run(o, values as Record<string, string>);
  } catch (err) {
    if (
      (err as { cause?: { code?: string } }).cause?.code === 'ECONNREFUSED' ||
      (err as Error).name === 'TypeError'
    ) {
      process.stderr.write(`act: cannot reach the control plane at ${o.url}: ${(err as Error).message}\n`);
      return 3;
    }
    throw err;
  }
}

function usageError(msg: string): number {
  process.stderr.write(`act: ${msg}\n`);
  return 2;
}

async function request(o: Opts, method: string, path: string, body?: unknown): Promise<Response> {
  const headers: Record<string, string> = {};
  if (o.key) headers.authorization = `Bearer ${o.key}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  return fetch(o.url + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function print(o: Opts, method: string, path: string, body?: unknown): Promise<number> {
  const res = await request(o, method, path, body);
  if (!res.ok) return failed(res);
  process.stdout.write(JSON.stringify(await res.json(), null, 2) + '\n');
  return 0;
}

async function failed(res: Response): Promise<number> {
  const text = await res.text();
  let msg = text;
  try {
    const e = (JSON.parse(text) as { error?: { code: string; message: string; field?: string } }).error;
    if (e) msg = `${e.code}: ${e.message}${e.field ? ` (field ${e.field})` : ''}`;
  } catch {
    // not JSON
  }
  process.stderr.write(`act: HTTP ${res.status}: ${msg}\n`);
  return 1;
}

async function streamTo(res: Response, out: NodeJS.WritableStream): Promise<void> {
  const reader = res.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) return;
    if (!out.write(value)) await new Promise((r) => out.once('drain', r));
  }
}

export const CLI_NOUNS = ['keys', 'tokens', 'api-keys', 'audit'];
export const CLI_HELP = Object.values(COMMANDS)
  .map((c) => `  ${c.usage}`)
  .join('\n');
