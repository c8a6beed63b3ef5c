/**
 * Output of the CLI: human tables (cli-table3) by default, the API's JSON with
 * --json, bare ids with --quiet. Results go to stdout, notes and errors to
 * stderr. A closed pipe (`act audit export | head`) ends the command quietly
 * with status 0.
 */
import Table from 'cli-table3';

/** Borderless, uncoloured: readable on a terminal, greppable in a pipe. */
const PLAIN_TABLE = {
  chars: {
    top: '',
    'top-mid': '',
    'top-left': '',
    'top-right': '',
    bottom: '',
    'bottom-mid': '',
    'bottom-left': '',
    'bottom-right': '',
    left: '',
    'left-mid': '',
    mid: '',
    'mid-mid': '',
    right: '',
    'right-mid': '',
    middle: '  ',
  },
  style: { head: [] as string[], border: [] as string[], 'padding-left': 0, 'padding-right': 0 },
};

/**
 * Control characters shown escaped: text from the server (an agent's resource
 * or context, shown to an approver) must not move the cursor, clear the screen or
 * rewrite earlier lines of the operator's terminal.
 */
export function printable(s: string, keepNewlines = false): string {
  /* eslint-disable no-control-regex -- matching control characters is the point */
  const re = keepNewlines
    ? /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u2028\u2029]/g
    : /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;
  /* eslint-enable no-control-regex */
  return s.replace(re, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A cell: strings as they are, lists joined, objects as compact JSON, empty as "-". */
export function cell(v: unknown): string {
  if (v === undefined || v === null || v === '') return '-';
  if (Array.isArray(v)) return v.length === 0 ? '-' : v.map((x) => cell(x)).join(',');
  if (typeof v === 'object') return Object.keys(v).length === 0 ? '-' : printable(JSON.stringify(v));
  return printable(String(v));
}

/** Renders rows under upper-case headers, columns separated by two spaces. */
export function renderTable(headers: string[], rows: unknown[][]): string {
  const t = new Table({ head: headers, ...PLAIN_TABLE });
  for (const r of rows) t.push(r.map(cell));
  // cli-table3 pads the last column too; trailing blanks only get in the way of grep and diff.
  return (
    t
      .toString()
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n') + '\n'
  );
}

/** Renders "key  value" lines for one object. */
export function renderFields(pairs: [string, unknown][]): string {
  const t = new Table(PLAIN_TABLE);
  for (const [k, v] of pairs) t.push([`${k}:`, cell(v)]);
  return (
    t
      .toString()
      .split('\n')
      .map((l) => l.trimEnd())
      .join('\n') + '\n'
  );
}

export interface OutputMode {
  json: boolean;
  quiet: boolean;
}

/** Where a command writes; one per run. */
export class Output {
  constructor(
    readonly mode: OutputMode,
    readonly stdout: NodeJS.WritableStream = process.stdout,
    readonly stderr: NodeJS.WritableStream = process.stderr,
  ) {}

  get json(): boolean {
    return this.mode.json;
  }

  get quiet(): boolean {
    return this.mode.quiet;
  }

  /** Writes to stdout, waiting while the pipe is full (bounded memory for streams). */
  write(s: string | Uint8Array): Promise<void> {
    if (this.stdout.write(s)) return Promise.resolve();
    return new Promise((resolve) => this.stdout.once('drain', resolve));
  }

  /** Human text: control characters escaped, line breaks kept. */
  say(s: string): Promise<void> {
    return this.write(printable(s, true));
  }

  /** The API's JSON, indented (one document; `jq` and JSON.parse read it). */
  printJson(v: unknown): Promise<void> {
    return this.write(JSON.stringify(v, null, 2) + '\n');
  }

  table(headers: string[], rows: unknown[][]): Promise<void> {
    return this.write(renderTable(headers, rows));
  }

  fields(pairs: [string, unknown][]): Promise<void> {
    return this.write(renderFields(pairs));
  }

  /** A human note on stderr (hints, next-page cursors); not with --quiet. */
  note(s: string): void {
    if (!this.mode.quiet) this.stderr.write(s.endsWith('\n') ? s : s + '\n');
  }
}

/**
 * Ends the process with status 0 when stdout's reader goes away (EPIPE), without
 * a stack trace: `act audit export | head -2` is a normal use.
 */
export function exitQuietlyOnClosedPipe(stream: NodeJS.WriteStream = process.stdout): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE' || err.code === 'ERR_STREAM_DESTROYED') process.exit(0);
    process.stderr.write(`act: cannot write output: ${err.message}\n`);
    process.exit(1);
  });
}
