/**
 * Spools that outlive their sidecar. With the spool on a per-node volume (the chart's
 * `sidecar.spool.nodeVolume`), each sidecar keeps its spool in its own subdirectory and marks it
 * with an owner file it refreshes while it runs. A spool whose owner stopped (cleanly, with
 * records left) or vanished (no refresh for ORPHAN_AFTER_MS: a deleted pod, a crashed node
 * process) is adopted by the next sidecar on the node that serves the same agents: it ships
 * the records under their own chain (their sidecar id, named in its Hello) and deletes the
 * directory once everything is acknowledged.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';
import type { SpoolLogger } from './spool';
import { AuditSpool } from './spool';

const OWNER_FILE = 'owner.json';
const ADOPT_LOCK = 'adopted.lock';
/** A live sidecar refreshes its owner file this often. */
export const OWNER_REFRESH_MS = 10_000;
/** A spool whose owner file is older than this is orphaned. */
export const ORPHAN_AFTER_MS = 60_000;

export interface OwnerInfo {
  sidecar_id: string;
  /** The API key the sidecar synced with: a sidecar id belongs to one key at the control plane. */
  api_key_id?: string;
  agent_ids: string[];
  pid: number;
  host: string;
  touched_at_ms: number;
  /** Set by a clean shutdown that left records: adoptable at once. */
  stopped?: boolean;
}

/** Writes and refreshes this sidecar's owner file in its spool directory. */
export class SpoolOwner {
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly dir: string,
    private readonly info: Omit<OwnerInfo, 'touched_at_ms'>,
  ) {}

  start(): void {
    this.write(false);
    this.timer = setInterval(() => this.write(false), OWNER_REFRESH_MS);
    this.timer.unref();
  }

  /** Marks the spool stopped (adoptable now) when records are left; else leaves it fresh. */
  stop(recordsLeft: number): void {
    if (this.timer) clearInterval(this.timer);
    this.write(recordsLeft > 0);
  }

  private write(stopped: boolean): void {
    const file = path.join(this.dir, OWNER_FILE);
    const body: OwnerInfo = { ...this.info, touched_at_ms: Date.now(), ...(stopped ? { stopped } : {}) };
    writeFileSync(`${file}.tmp`, JSON.stringify(body));
    renameSync(`${file}.tmp`, file);
  }
}

/** Reads a spool directory's owner file; undefined when missing or unreadable. */
export function readOwner(dir: string): OwnerInfo | undefined {
  try {
    const o = JSON.parse(readFileSync(path.join(dir, OWNER_FILE), 'utf8')) as OwnerInfo;
    return typeof o.sidecar_id === 'string' && Array.isArray(o.agent_ids) ? o : undefined;
  } catch {
    return undefined;
  }
}

export interface AdoptedSpool {
  dir: string;
  source: string;
  spool: AuditSpool;
}

/**
 * Finds and opens orphaned spools in `root` (siblings of `own`) whose agents this sidecar
 * serves. Two sidecars racing for one spool: the one that creates its lock file first wins.
 */
export async function adoptOrphans(opts: {
  root: string;
  own: string;
  agents: string[];
  /** This sidecar's API key id: spools of sidecars that used another key are not adopted. */
  apiKeyId?: string;
  /** Directories not to adopt (refused by the control plane earlier). */
  skip?: ReadonlySet<string>;
  logger: SpoolLogger & { info(obj: object, msg: string): void };
  now?: number;
}): Promise<AdoptedSpool[]> {
  const now = opts.now ?? Date.now();
  const serveAll = opts.agents.includes('*');
  const out: AdoptedSpool[] = [];
  let names: string[];
  try {
    names = readdirSync(opts.root);
  } catch {
    return out;
  }
  for (const name of names) {
    const dir = path.join(opts.root, name);
    if (path.resolve(dir) === path.resolve(opts.own) || opts.skip?.has(path.resolve(dir))) continue;
    try {
      if (!statSync(dir).isDirectory()) continue;
    } catch {
      continue;
    }
    const owner = readOwner(dir);
    if (!owner) continue;
    const orphaned = owner.stopped === true || now - owner.touched_at_ms > ORPHAN_AFTER_MS;
    if (!orphaned) continue;
    const mine =
      serveAll ||
      (owner.agent_ids.length > 0 &&
        !owner.agent_ids.includes('*') &&
        owner.agent_ids.every((a) => opts.agents.includes(a)));
    if (!mine) continue;
    // Its records can ship only with the key its sidecar id is bound to.
    if (opts.apiKeyId !== undefined && owner.api_key_id !== undefined && owner.api_key_id !== opts.apiKeyId)
      continue;
    try {
      mkdirSync(path.join(dir, ADOPT_LOCK)); // atomic: the loser of a race gets EEXIST
    } catch {
      continue;
    }
    try {
      const spool = await AuditSpool.open({ dir, source: owner.sidecar_id, logger: opts.logger });
      opts.logger.info(
        { dir, sidecar_id: owner.sidecar_id, records: spool.depth },
        'adopted the audit spool of a stopped sidecar; shipping its records',
      );
      out.push({ dir, source: owner.sidecar_id, spool });
    } catch (err) {
      rmSync(path.join(dir, ADOPT_LOCK), { recursive: true, force: true });
      opts.logger.error({ dir, err }, 'could not open an orphaned audit spool');
    }
  }
  return out;
}

/** Gives an adopted spool up (closed, lock removed): another sidecar may adopt it. */
export async function releaseAdopted(a: AdoptedSpool): Promise<void> {
  await a.spool.close();
  rmSync(path.join(a.dir, ADOPT_LOCK), { recursive: true, force: true });
}

/** Closes an adopted spool whose records are all shipped and removes its directory. */
export async function retireAdopted(a: AdoptedSpool): Promise<void> {
  await a.spool.close();
  rmSync(a.dir, { recursive: true, force: true });
}
