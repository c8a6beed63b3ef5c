/**
 * The CLI's HTTP client for the control plane's REST API and the sidecar's
 * loopback REST API: bearer authentication, JSON bodies, and errors turned
 * into exit codes (an error answer is 1, no answer at all is 3).
 */
import type { Connection } from './config';
import { ApiError, UnreachableError, UsageError } from './errors';

/** How a request authenticates. */
export type Auth = 'key' | 'none' | { bearer: string; what: string };

export interface RequestOptions {
  body?: unknown;
  query?: Record<string, string | number | boolean | undefined>;
  auth?: Auth;
  signal?: AbortSignal;
}

/** The JSON error body every ACT server sends. */
interface ErrorBody {
  error?: { code?: string; message?: string; field?: string };
}

const NETWORK_CODES: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host not found',
  EAI_AGAIN: 'host name lookup failed',
  ETIMEDOUT: 'timed out',
  UND_ERR_CONNECT_TIMEOUT: 'connect timed out',
  ECONNRESET: 'connection reset',
  EHOSTUNREACH: 'host unreachable',
  ENETUNREACH: 'network unreachable',
  EPIPE: 'connection closed',
  UND_ERR_SOCKET: 'connection closed',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'TLS: self-signed certificate',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS: self-signed certificate in chain',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS: certificate not trusted (set NODE_EXTRA_CA_CERTS)',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS: certificate does not name this host',
  CERT_HAS_EXPIRED: 'TLS: certificate expired',
  ERR_SSL_WRONG_VERSION_NUMBER: 'TLS: the server does not speak TLS (use http://)',
};

/** One server the CLI talks to: the control plane (`--url`) or a sidecar (`--sidecar`). */
export class ApiClient {
  constructor(
    readonly conn: Connection,
    /** "control plane" or "sidecar", for messages. */
    readonly what = 'control plane',
    private readonly fetchImpl: typeof fetch = fetch,
  ) {}

  /** The API key, or a usage error that says how to give one. */
  key(): string {
    if (this.conn.key === undefined)
      throw new UsageError(
        'no API key: pass --key KEY, set ACT_KEY, or save one with `act login --url URL --key KEY`',
      );
    return this.conn.key;
  }

  /** Sends a request; any HTTP status comes back, only a failure to get an answer throws. */
  async raw(method: string, path: string, o: RequestOptions = {}): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const auth = o.auth ?? 'key';
    if (auth === 'key') headers.authorization = `Bearer ${this.key()}`;
    else if (auth !== 'none') headers.authorization = `Bearer ${auth.bearer}`;
    if (o.body !== undefined) headers['content-type'] = 'application/json';
    let url = this.conn.url + path;
    if (o.query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(o.query)) if (v !== undefined && v !== '') q.set(k, String(v));
      const s = q.toString();
      if (s) url += (path.includes('?') ? '&' : '?') + s;
    }
    try {
      return await this.fetchImpl(url, {
        method,
        headers,
        body: o.body === undefined ? undefined : JSON.stringify(o.body),
        signal: o.signal,
      });
    } catch (err) {
      if ((err as Error).name === 'AbortError') throw err;
      // fetch refuses some ports outright (1, 6000, 6665-6669, …): no connection was tried.
      if ((err as Error & { cause?: Error }).cause?.message === 'bad port')
        throw new UsageError(
          `${this.conn.urlFrom}: ${this.conn.url} uses a port that fetch refuses to connect to; run the ${this.what} on another port`,
        );
      throw this.unreachable(err);
    }
  }

  /** Sends a request and returns its JSON answer; an error status becomes an ApiError. */
  async json<T = Record<string, unknown>>(method: string, path: string, o: RequestOptions = {}): Promise<T> {
    const res = await this.raw(method, path, o);
    if (!res.ok) throw await this.apiError(res, method, path, o.auth ?? 'key');
    const text = await this.text(res);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new ApiError(
        `the ${this.what} at ${this.conn.url} answered ${method} ${path} with something that is not JSON: ${text.slice(0, 200)}`,
        res.status,
        'BAD_RESPONSE',
      );
    }
  }

  private async text(res: Response): Promise<string> {
    try {
      return await res.text();
    } catch (err) {
      throw this.unreachable(err);
    }
  }

  /** The error for an answer with an error status, with a hint for the common ones. */
  async apiError(res: Response, method: string, path: string, auth: Auth): Promise<ApiError> {
    const text = await this.text(res).catch(() => '');
    let code = `HTTP_${res.status}`;
    let msg = text.trim().slice(0, 500) || res.statusText;
    let field: string | undefined;
    try {
      const e = (JSON.parse(text) as ErrorBody).error;
      if (e?.code) {
        code = e.code;
        msg = e.message ?? '';
        field = e.field;
      }
    } catch {
      // not JSON: keep the text
    }
    let hint = '';
    const who =
      auth === 'key' ? `the API key from ${this.conn.keyFrom}` : auth === 'none' ? 'no key' : auth.what;
    if (res.status === 401)
      hint =
        auth === 'key'
          ? ` — ${who} was not accepted; check --key / ACT_KEY, or run \`act login --url URL --key KEY\``
          : ` — ${who} was not accepted`;
    else if (res.status === 403) hint = ` — ${who} may not ${method} ${path.split('?')[0]}`;
    else if (res.status === 404 && /^no route for /.test(msg))
      hint = ` — the ${this.what} at ${this.conn.url} does not serve this route (an older version?)`;
    return new ApiError(
      `HTTP ${res.status} ${code}: ${msg}${field ? ` (field ${field})` : ''}${hint}`,
      res.status,
      code,
    );
  }

  private unreachable(err: unknown): UnreachableError {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const code = e.cause?.code ?? (e as NodeJS.ErrnoException).code ?? '';
    const why = NETWORK_CODES[code] ?? e.cause?.message ?? e.message;
    const flag =
      this.what === 'sidecar' ? '--sidecar/ACT_SIDECAR_URL' : `--url/ACT_URL (now from ${this.conn.urlFrom})`;
    return new UnreachableError(
      `cannot reach the ${this.what} at ${this.conn.url} (${why}); is it running? set ${flag}`,
    );
  }
}
