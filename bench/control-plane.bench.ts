/**
 * The control plane as operators load it: tokens issued per second and central
 * checks per second over REST (16 concurrent clients), and a streamed NDJSON export
 * of 1,000,000 audit records (50,000 with --quick) — records/s and the process's
 * peak RSS while streaming, to show the export runs in bounded memory.
 *
 * Run alone: `npx tsx bench/control-plane.bench.ts [--quick]` (needs `npm run build`).
 */
import { existsSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { AuditRecord } from '../src/gen/act/v1/admin';
import { Decision, ReasonCode } from '../src/gen/act/v1/decision';
import { newSortableId } from '../src/common/ids';
import { openLmdbStore } from '../src/store';
import { ACT_BIN, restClient, startControlPlane, tempDir } from '../test/support/processes';

export const describe =
  'Control plane over REST with 16 concurrent clients: POST /api/tokens and central POST /api/enforcement/check ' +
  '(each check durably audited); then GET /api/audit/export?format=ndjson of a pre-filled audit trail, with the ' +
  "process's peak RSS while streaming.";

export const unit = (key: string): string =>
  key.endsWith('_mb')
    ? 'MB'
    : key.endsWith('_records')
      ? 'records'
      : key.includes('export')
        ? 'records/s'
        : 'ops/s';

/**
 * Resident memory of a process in MB: `VmRSS` (all of it) or `RssAnon` (heap and other
 * private memory). LMDB maps its file, so pages the export reads count in VmRSS as
 * file-backed memory the kernel can drop at any time; RssAnon is what the process holds.
 */
function rssMb(pid: number, field: 'VmRSS' | 'RssAnon' = 'VmRSS'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : 0;
}

/** Runs `total` calls with `concurrency` workers; returns calls per second. */
async function drive(
  total: number,
  concurrency: number,
  call: (i: number) => Promise<void>,
): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) await call(next++);
    }),
  );
  return total / ((performance.now() - t0) / 1000);
}

async function fillAudit(dataDir: string, n: number): Promise<void> {
  const store = await openLmdbStore({ dataDir });
  const now = Date.now() - 3_600_000;
  const batch = 5000;
  for (let i = 0; i < n; i += batch) {
    const records: AuditRecord[] = [];
    for (let j = i; j < Math.min(n, i + batch); j++) {
      records.push(
        AuditRecord.fromPartial({
          audit_id: newSortableId('audit', now + j),
          time: new Date(now + j).toISOString(),
          agent_id: `agent_bench${String(j % 100).padStart(8, '0')}`,
          token_id: 'tok_bench000000000000',
          action: 'read:customer_profile',
          resource: `customer_${j}`,
          decision: Decision.ALLOW,
          reason_code: ReasonCode.GRANTED,
          reason: 'Token valid, capability granted',
          context: { ip: '10.0.1.50', reason: 'User inquiry about order status' },
          source: 'bench',
          seq: j + 1,
          allowed: true,
        }),
      );
    }
    await store.audit.append(records);
  }
  await store.close();
}

/** Streams the export, counting lines; samples the server's RSS meanwhile. */
function streamExport(
  port: number,
  key: string,
  pid: number,
): Promise<{ records: number; seconds: number; peakMb: number; peakAnonMb: number }> {
  return new Promise((resolve, reject) => {
    let peak = rssMb(pid);
    let peakAnon = rssMb(pid, 'RssAnon');
    const sampler = setInterval(() => {
      peak = Math.max(peak, rssMb(pid));
      peakAnon = Math.max(peakAnon, rssMb(pid, 'RssAnon'));
    }, 50);
    const t0 = performance.now();
    let lines = 0;
    const req = http.get(
      {
        host: '127.0.0.1',
        port,
        path: '/api/audit/export?format=ndjson',
        headers: { authorization: `Bearer ${key}` },
      },
      (res) => {
        if (res.statusCode !== 200) reject(new Error(`export: HTTP ${res.statusCode}`));
        res.on('data', (chunk: Buffer) => {
          for (let i = 0; i < chunk.length; i++) if (chunk[i] === 10) lines++;
        });
        res.on('end', () => {
          clearInterval(sampler);
          resolve({
            records: lines,
            seconds: (performance.now() - t0) / 1000,
            peakMb: Math.max(peak, rssMb(pid)),
            peakAnonMb: Math.max(peakAnon, rssMb(pid, 'RssAnon')),
          });
        });
      },
    );
    req.on('error', (e) => {
      clearInterval(sampler);
      reject(e);
    });
  });
}

export async function run(opts: { quick: boolean }): Promise<Record<string, number>> {
  if (!existsSync(ACT_BIN)) throw new Error(`${ACT_BIN} is missing: run npm run build first`);
  const out: Record<string, number> = {};
  const tmp = tempDir('bench-cp');
  const dataDir = path.join(tmp.dir, 'cp');
  const exportN = opts.quick ? 50_000 : 1_000_000;
  process.stdout.write(`  filling the audit trail with ${exportN.toLocaleString()} records…\n`);
  await fillAudit(dataDir, exportN);
  const cp = await startControlPlane(dataDir);
  try {
    const api = restClient(cp.url, cp.adminKey);
    const agent = (await api('POST', '/api/agents', { name: 'bench agent' })).body.agent_id as string;
    const policy = (await api('POST', '/api/policies', { name: 'bench', capabilities: ['read:*'] })).body
      .policy_id as string;
    const n = opts.quick ? 500 : 5000;
    out['cp.tokens_issued'] = Math.round(
      await drive(n, 16, async () => {
        const r = await api('POST', '/api/tokens', { agent_id: agent, policy_ids: [policy] });
        if (r.status !== 201) throw new Error(`issue: ${r.status} ${r.text}`);
      }),
    );
    const token = (await api('POST', '/api/tokens', { agent_id: agent, policy_ids: [policy] })).body
      .token as string;
    const check = restClient(cp.url, token);
    out['cp.central_checks'] = Math.round(
      await drive(n, 16, async (i) => {
        const r = await check('POST', '/api/enforcement/check', {
          token,
          action: 'read:customer_profile',
          resource: `c${i}`,
        });
        if (r.body?.allowed !== true) throw new Error(`check: ${r.status} ${r.text}`);
      }),
    );
    const rssBefore = rssMb(cp.child.pid!);
    const rssAnonBefore = rssMb(cp.child.pid!, 'RssAnon');
    const e = await streamExport(cp.httpPort, cp.adminKey, cp.child.pid!);
    out['cp.export_records'] = e.records;
    out['cp.export_ndjson'] = Math.round(e.records / e.seconds);
    out['cp.rss_before_export_mb'] = Math.round(rssBefore);
    out['cp.rss_peak_during_export_mb'] = Math.round(e.peakMb);
    out['cp.rss_anon_before_export_mb'] = Math.round(rssAnonBefore);
    out['cp.rss_anon_peak_during_export_mb'] = Math.round(e.peakAnonMb);
  } finally {
    await cp.stop();
    tmp.remove();
  }
  return out;
}

if (require.main === module) {
  run({ quick: process.argv.includes('--quick') }).then(
    (r) => console.log(r),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
