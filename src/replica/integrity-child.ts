/**
 * Run as a child process by integrity.ts: opens an LMDB replica and reads every entry of every
 * database. Exit 0 when all is readable; a crash (SIGSEGV/SIGBUS) or exit 1 means damage.
 */
import { open } from 'lmdb';

const file = process.argv[2];
if (!file) {
  process.stderr.write('usage: integrity-child <replica.mdb>\n');
  process.exit(2);
}
const root = open({ path: file, maxDbs: 12, readOnly: true });
let entries = 0;
try {
  const names = ['agents', 'policies', 'revocations', 'keys', 'approvals', 'meta'];
  for (const name of names) {
    const db = root.openDB({
      name,
      ...(name === 'policies' || name === 'keys' ? { encoding: 'binary' as const } : {}),
    });
    for (const { key, value } of db.getRange()) {
      if (key === undefined || value === undefined) throw new Error(`unreadable entry in ${name}`);
      entries++;
    }
  }
  process.stdout.write(`ok ${entries}\n`);
  process.exit(0);
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(1);
}
