/**
 * Damage checks for the sidecar's LMDB replica, before anything maps it: a zeroed, overwritten
 * or truncated file makes LMDB crash the process (SIGSEGV/SIGBUS) with no word. A damaged
 * replica is moved aside and rebuilt from a snapshot; checks fail closed (no replica) until
 * the snapshot is applied.
 *
 * - Always: the two meta pages are read with plain file I/O — LMDB's magic and data version,
 *   a sane page size, and a file long enough for the newest meta's last page.
 * - After an unclean stop (a marker file left by the previous run): a child process opens the
 *   replica and reads every entry of every database; if it crashes or fails, the replica is
 *   damaged — the child takes the crash, not the sidecar.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';

const MAGIC = 0xbeefc0de;
const DATA_VERSION = 2;

export interface IntegrityProblem {
  problem: string;
}

interface Meta {
  psize: number;
  lastPage: number;
  txnid: bigint;
}

/** Reads a meta page at `offset`; undefined when it is not one. */
function readMeta(buf: Buffer, offset: number): Meta | undefined {
  if (buf.length < offset + 192) return undefined;
  // The magic sits right after the page header (24 bytes in this LMDB; searched to be safe).
  for (let at = offset; at < offset + 64; at += 4) {
    if (buf.readUInt32LE(at) !== MAGIC) continue;
    if ((buf.readUInt32LE(at + 4) & 0xffff) !== DATA_VERSION) return undefined;
    const psize = buf.readUInt32LE(at + 24);
    return {
      psize,
      lastPage: Number(buf.readBigUInt64LE(at + 120)),
      txnid: buf.readBigUInt64LE(at + 128),
    };
  }
  return undefined;
}

/** Checks the file's meta pages; undefined when they look sound (or the file does not exist). */
export function checkReplicaHeader(file: string): IntegrityProblem | undefined {
  if (!existsSync(file)) return undefined;
  const fd = openSync(file, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size === 0) return { problem: 'the file is empty' };
    const head = Buffer.alloc(Math.min(size, 2 * 65536));
    readSync(fd, head, 0, head.length, 0);
    const m0 = readMeta(head, 0);
    if (m0 === undefined) return { problem: 'page 0 is not an LMDB meta page (bad magic or version)' };
    const psize = m0.psize;
    if (psize < 512 || psize > 65536 || (psize & (psize - 1)) !== 0)
      return { problem: `implausible page size ${psize}` };
    if (size < 2 * psize) return { problem: `the file is shorter than its two meta pages (${size} bytes)` };
    const m1 = readMeta(head, psize);
    const newest = m1 !== undefined && m1.txnid > m0.txnid ? m1 : m0;
    const need = (newest.lastPage + 1) * psize;
    if (newest.lastPage < 1 || need > size)
      return { problem: `the file is truncated (${size} bytes; its last page needs ${need})` };
    return undefined;
  } finally {
    closeSync(fd);
  }
}

/**
 * Opens the replica in a child process and reads every entry (only after an unclean stop).
 * @returns a problem when the child failed or died by a signal
 */
export function walkReplicaInChild(file: string, timeoutMs = 60_000): IntegrityProblem | undefined {
  const js = path.join(__dirname, '../replica/integrity-child.js');
  const args = existsSync(js)
    ? [js, file]
    : ['--import', 'tsx', path.join(__dirname, 'integrity-child.ts'), file];
  const r = spawnSync(process.execPath, args, {
    timeout: timeoutMs,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (r.error) return { problem: `the integrity check could not run: ${r.error.message}` };
  if (r.signal) return { problem: `reading it crashed the checker (${r.signal})` };
  if (r.status !== 0)
    return { problem: `reading it failed: ${(r.stderr || r.stdout).trim().split('\n').pop() ?? ''}` };
  return undefined;
}
