/**
 * Child process for the spool's SIGKILL test: appends records forever with a few in flight and
 * prints each record's seq once `append()` has resolved (i.e. once the decision could answer).
 * Usage: node --import tsx test/support/spool-writer.ts <dir> <disk|os>
 */
import { AuditRecord } from '../../src/gen/act/v1/admin';
import { AuditSpool, type Durability } from '../../src/audit';

async function main(): Promise<void> {
  const [dir, durability] = process.argv.slice(2) as [string, Durability];
  const spool = await AuditSpool.open({ dir, source: 'sc_kill', durability, segmentBytes: 16 * 1024 });
  let i = 0;
  const worker = async (): Promise<void> => {
    for (;;) {
      const r = AuditRecord.fromPartial({
        audit_id: `audit_${process.pid}_${i++}`,
        action: 'files.read',
        reason: 'x'.repeat(100),
      });
      await spool.append(r);
      process.stdout.write(`${r.seq}\n`);
      // Let the event loop turn (timers, I/O) as a serving sidecar's would.
      if (i % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
