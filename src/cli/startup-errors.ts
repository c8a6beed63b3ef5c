/**
 * Start-up failures of `act control-plane` and `act sidecar` as one human line
 * that names what failed and the flag or environment variable to change
 * ("act control-plane: cannot listen on 127.0.0.1:8700 (address in use): set
 * --http-addr/ACT_HTTP_ADDR"). Checks that need no side effect (TLS files, the
 * sidecar's key) run before the process starts; listen and file-system errors
 * are recognised from what start() throws.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Specs } from '../common/options';

export interface StartupProblem {
  message: string;
  exitCode: number;
}

const LISTEN_REASONS: Record<string, string> = {
  EADDRINUSE: 'address in use',
  EACCES: 'permission denied; ports below 1024 need privileges',
  EPERM: 'permission denied',
  EADDRNOTAVAIL: 'no such address on this machine',
  ENOTFOUND: 'host name does not resolve',
  EAI_AGAIN: 'host name does not resolve',
  EINVAL: 'invalid address',
};

const FILE_REASONS: Record<string, string> = {
  ENOENT: 'no such file or directory',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  EISDIR: 'is a directory',
  ENOTDIR: 'a parent is not a directory',
  EROFS: 'read-only file system',
  ENOSPC: 'no space left on the device',
};

const flagOf = (specs: Specs, key: string): string => {
  const s = specs[key];
  return s ? `${s.flag}/${s.env}` : key;
};

/** host:port of a parsed address option ({host, port}), a listen list entry ("unix:/p") as it is. */
function addrText(v: unknown): string[] {
  if (v === undefined || v === null) return [];
  if (Array.isArray(v)) return v.map(String);
  if (typeof v === 'object' && 'port' in v) {
    const { host, port } = v as { host: string; port: number };
    return [`${host.includes(':') ? `[${host}]` : host}:${port}`];
  }
  return [String(v)];
}

/** The listen options of a process's specs: every key ending in "Addr". */
function listeners(specs: Specs, cfg: Record<string, unknown>): { key: string; addrs: string[] }[] {
  return Object.keys(specs)
    .filter((k) => /Addr$/.test(k))
    .map((k) => ({ key: k, addrs: addrText(cfg[k]) }))
    .filter((l) => l.addrs.length > 0);
}

/** The file options: TLS certificates, keys and CAs. */
const FILE_KEYS = /^(tls|webhookTls)(Cert|Key|Ca)$/;

/**
 * Checks what can be checked without side effects: TLS files readable and
 * valid PEM, a key that matches its certificate, the sidecar's API key.
 */
export function preflight(
  component: string,
  specs: Specs,
  cfg: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): StartupProblem | undefined {
  const fail = (message: string): StartupProblem => ({
    message: `act ${component}: ${message}`,
    exitCode: 2,
  });
  for (const prefix of ['tls', 'webhookTls'])
    if (`${prefix}Cert` in specs && `${prefix}Key` in specs && !cfg[`${prefix}Cert`] !== !cfg[`${prefix}Key`])
      return fail(
        `set both ${flagOf(specs, `${prefix}Cert`)} and ${flagOf(specs, `${prefix}Key`)}, or neither`,
      );
  const read = new Map<string, Buffer>();
  for (const key of Object.keys(specs).filter((k) => FILE_KEYS.test(k))) {
    const file = cfg[key];
    if (typeof file !== 'string' || file === '') continue;
    let pem: Buffer;
    try {
      pem = readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? '';
      return fail(
        `cannot read ${file} (${FILE_REASONS[code] ?? (err as Error).message}): set ${flagOf(specs, key)}`,
      );
    }
    const kind = /Key$/.test(key) ? 'private key' : 'certificate';
    try {
      if (kind === 'private key') createPrivateKey(pem);
      else new X509Certificate(pem);
    } catch {
      return fail(`${file} is not a PEM ${kind}: set ${flagOf(specs, key)}`);
    }
    read.set(key, pem);
  }
  for (const prefix of ['tls', 'webhookTls']) {
    const cert = read.get(`${prefix}Cert`);
    const key = read.get(`${prefix}Key`);
    if (cert && key && !new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)))
      return fail(
        `${String(cfg[`${prefix}Key`])} is not the private key of ${String(cfg[`${prefix}Cert`])}: set ${flagOf(specs, `${prefix}Cert`)} and ${flagOf(specs, `${prefix}Key`)} to a matching pair`,
      );
  }
  if ('sidecarKey' in specs && !cfg.sidecarKey && !env.ACT_ADMIN_KEY)
    return fail(
      `no API key for the Sync stream to the control plane: set ${flagOf(specs, 'sidecarKey')} to a key with the SIDECAR role (create one with \`act api-keys create --name NAME --role SIDECAR\`)`,
    );
  return undefined;
}

/** The listen error inside what start() threw (node's net errors, or grpc-js's bind summary). */
function listenError(
  err: Error & NodeJS.ErrnoException & { address?: string; port?: number },
): { code: string; addr: string } | undefined {
  if (
    err.syscall === 'listen' ||
    err.syscall === 'bind' ||
    (err.code && err.code in LISTEN_REASONS && err.address)
  ) {
    if (err.address !== undefined) {
      const host =
        err.address.includes(':') && !err.address.startsWith('/') ? `[${err.address}]` : err.address;
      return { code: err.code ?? '', addr: err.port !== undefined ? `${host}:${err.port}` : err.address };
    }
  }
  // grpc-js: "No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use 127.0.0.1:8701]"
  const m =
    /\b(?:listen|bind) (E[A-Z_]+)(?::[^\]\n]*?)? (\[[0-9a-fA-F:]+\]:\d+|[^\s\]]+:\d+|\/[^\s\]]+)/.exec(
      err.message ?? '',
    );
  if (m) return { code: m[1]!, addr: m[2]! };
  if (/^No address added out of total \d+ resolved/.test(err.message ?? '')) return { code: '', addr: '' };
  return undefined;
}

function sameAddr(a: string, b: string): boolean {
  const norm = (s: string) => s.replace(/^unix:/, '').replace(/^localhost:/, '127.0.0.1:');
  if (norm(a) === norm(b)) return true;
  // A listener on 0.0.0.0 or [::] is reported with the address it tried.
  const port = (s: string) => /:(\d+)$/.exec(s)?.[1];
  return port(a) !== undefined && port(a) === port(b) && !a.startsWith('/') && !b.startsWith('/');
}

/**
 * One human line for an error start() threw, or undefined when it is not one a
 * user can fix by changing a setting (then the caller logs it whole).
 */
export function describeStartupError(
  component: string,
  specs: Specs,
  cfg: Record<string, unknown>,
  err: unknown,
): StartupProblem | undefined {
  const e = err as Error & NodeJS.ErrnoException & { address?: string; port?: number };
  const fail = (message: string, exitCode = 1): StartupProblem => ({
    message: `act ${component}: ${message}`,
    exitCode,
  });
  // What start() reports itself: a sentence and the setting to change ("--http-addr / ACT_HTTP_ADDR").
  if (e instanceof Error && e.name === 'StartupError') {
    const setting = (e as { setting?: string }).setting?.replace(/ \/ /g, '/');
    let msg = e.message;
    // grpc-js's bind summary inside the sentence, told the way node's listen errors are
    const inner = listenError(e);
    if (inner?.code && /^cannot listen on /.test(msg))
      msg = `cannot listen on ${inner.addr} (${LISTEN_REASONS[inner.code] ?? inner.code})`;
    return fail(`${msg}${setting ? `: set ${setting}` : ''}`);
  }
  const le = listenError(e);
  if (le) {
    const candidates = listeners(specs, cfg);
    const hit = le.addr ? candidates.find((l) => l.addrs.some((a) => sameAddr(a, le.addr))) : undefined;
    const flags = hit ? flagOf(specs, hit.key) : candidates.map((l) => flagOf(specs, l.key)).join(' or ');
    const reason = LISTEN_REASONS[le.code] ?? (le.code || 'failed');
    return fail(`cannot listen on ${le.addr || 'its address'} (${reason}): set ${flags}`);
  }
  if (e?.path && e.code && e.code in FILE_REASONS) {
    const p = path.resolve(e.path);
    const dataDir = typeof cfg.dataDir === 'string' ? path.resolve(cfg.dataDir) : undefined;
    if (dataDir && (p === dataDir || p.startsWith(dataDir + path.sep) || dataDir.startsWith(p + path.sep)))
      return fail(
        `cannot use the data directory ${cfg.dataDir as string} (${FILE_REASONS[e.code]}: ${e.path}): set ${flagOf(specs, 'dataDir')}`,
      );
    for (const key of Object.keys(specs).filter((k) => FILE_KEYS.test(k)))
      if (typeof cfg[key] === 'string' && path.resolve(cfg[key]) === p)
        return fail(`cannot read ${e.path} (${FILE_REASONS[e.code]}): set ${flagOf(specs, key)}`, 2);
    return fail(`${FILE_REASONS[e.code]}: ${e.path}`);
  }
  return undefined;
}

/** True for grpc-js's own log line about a failed bind (the error it throws says the same). */
export function isGrpcBindNoise(message: unknown): boolean {
  return typeof message === 'string' && /No address added out of total \d+ resolved/.test(message);
}
