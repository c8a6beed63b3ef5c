/**
 * Following what every replica commits. The table (act_changes, act_audit_feed) is the truth, read
 * by sequence number; LISTEN/NOTIFY only says "look now", and a poll every second looks anyway, so a
 * missed or late notification (a dropped connection, a restarted server) delays, never loses.
 *
 * - {@link OrderedFeed} delivers entries 1, 2, 3… each once and in order, from local commits (no
 *   round trip when the entry is the next one) or from the table.
 * - {@link Notifier} holds one LISTEN connection, reconnects with backoff, LISTENs again and wakes
 *   every feed after a reconnect (commits made meanwhile are caught up then).
 */
import pg from 'pg';

export interface FeedEntry<E> {
  seq: number;
  entry: E;
}

export interface OrderedFeedOptions<E> {
  /** Last sequence number already seen (nothing at or before it is delivered). */
  start: number;
  /** Entries after `after`, oldest first, at most a page; fewer than a page means "no more now". */
  fetch: (after: number) => Promise<FeedEntry<E>[]>;
  pageSize: number;
  /** Called once per entry, in sequence order. */
  deliver: (seq: number, entry: E) => void;
  /** Reports a fault (a failed fetch, entries trimmed before they could be read). */
  onError: (err: Error) => void;
}

export class OrderedFeed<E> {
  private position: number;
  /** Entries committed by this process, delivered without a round trip when they are next. */
  private readonly local = new Map<number, E>();
  private readonly waiters: { seq: number; resolve: () => void }[] = [];
  private running: Promise<void> | undefined;
  private again = false;
  /** Whether the table must be read (a notification, a poll, a gap), not only local entries. */
  private needFetch = false;
  private closed = false;

  constructor(private readonly opts: OrderedFeedOptions<E>) {
    this.position = opts.start;
  }

  /** The last delivered sequence number. */
  get seen(): number {
    return this.position;
  }

  /** A local commit of `seq`: resolves once it (and everything before it) has been delivered. */
  offer(seq: number, entry: E): Promise<void> {
    if (seq <= this.position || this.closed) return Promise.resolve();
    this.local.set(seq, entry);
    const p = this.waiter(seq);
    this.wake(false); // the next entry needs no round trip; a gap before it is fetched
    return p;
  }

  /** Resolves once `seq` has been delivered (at once if it has); catches up if needed. */
  waitFor(seq: number): Promise<void> {
    if (seq <= this.position || this.closed) return Promise.resolve();
    const p = this.waiter(seq);
    this.wake();
    return p;
  }

  /** A notification that `seq` was committed (by any replica): look unless it was seen already. */
  notified(seq: number): void {
    if (Number.isSafeInteger(seq) && seq <= this.position) return; // e.g. our own commit, delivered locally
    this.wake();
  }

  /** Looks for new entries now (a poll, a reconnect); `fetch` false: local entries only. */
  wake(fetch = true): void {
    if (this.closed) return;
    if (fetch) this.needFetch = true;
    if (this.running) {
      this.again = true;
      return;
    }
    // Tracked in `running`; its faults go to onError inside the loop.
    this.running = this.loop().finally(() => {
      this.running = undefined;
    });
  }

  /** Stops following; pending waiters are released. */
  async close(): Promise<void> {
    this.closed = true;
    await this.running;
    for (const w of this.waiters.splice(0)) w.resolve();
    this.local.clear();
  }

  private waiter(seq: number): Promise<void> {
    return new Promise<void>((resolve) => this.waiters.push({ seq, resolve }));
  }

  private async loop(): Promise<void> {
    do {
      this.again = false;
      try {
        await this.drain();
      } catch (err) {
        // The next wake (poll, notification, reconnect) retries.
        this.needFetch = true;
        this.opts.onError(err as Error);
        return;
      }
    } while (this.again && !this.closed);
  }

  private async drain(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      let next = this.local.get(this.position + 1);
      while (next !== undefined) {
        this.local.delete(this.position + 1);
        this.advance(this.position + 1, next);
        next = this.local.get(this.position + 1);
      }
      // Nothing asked for a look and nobody waits for an entry we lack: no round trip.
      if (!this.needFetch && this.waiters.length === 0 && this.local.size === 0) return;
      this.needFetch = false;
      const page = await this.opts.fetch(this.position);
      for (const { seq, entry } of page) {
        if (this.closed) return;
        if (seq <= this.position) continue;
        if (seq > this.position + 1) {
          this.opts.onError(
            new Error(
              `change feed: entries ${this.position + 1}..${seq - 1} were trimmed before this replica read them ` +
                `(it fell behind by more than the retained log); they are skipped`,
            ),
          );
        }
        this.advance(seq, entry);
      }
      if (page.length < this.opts.pageSize) {
        // Entries still waiting for a gap before them to be filled: the next wake looks again.
        if (this.local.size > 0) this.needFetch = true;
        return;
      }
      this.needFetch = true; // a full page: there may be more
    }
  }

  private advance(seq: number, entry: E): void {
    this.position = seq;
    try {
      this.opts.deliver(seq, entry);
    } finally {
      for (let i = this.waiters.length - 1; i >= 0; i--) {
        const w = this.waiters[i]!;
        if (w.seq <= seq) {
          this.waiters.splice(i, 1);
          w.resolve();
        }
      }
      for (const k of this.local.keys()) if (k <= seq) this.local.delete(k);
    }
  }
}

export interface NotifierOptions {
  connectionString: string;
  /**
   * channel -> what to call with the notification's payload when it is notified, and with no
   * payload after every reconnect and poll.
   */
  channels: Map<string, (payload?: string) => void>;
  /** Safety-net poll interval. */
  pollMs: number;
  /** false: no LISTEN connection, the poll alone. */
  listen: boolean;
  onError: (err: Error) => void;
}

const RECONNECT_MIN_MS = 100;
const RECONNECT_MAX_MS = 2000;

/** One LISTEN connection for every channel, kept up across server restarts. */
export class Notifier {
  private client: pg.Client | undefined;
  private closed = false;
  private backoff = RECONNECT_MIN_MS;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly poll: NodeJS.Timeout;
  private connecting: Promise<void> | undefined;

  constructor(private readonly opts: NotifierOptions) {
    this.poll = setInterval(() => this.wakeAll(), opts.pollMs);
    this.poll.unref();
  }

  /** Connects and LISTENs; rejects if the first connection fails. */
  async start(): Promise<void> {
    if (this.opts.listen) await this.connect();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.poll);
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    await this.connecting?.catch(() => undefined);
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
  }

  private wakeAll(): void {
    for (const wake of this.opts.channels.values()) wake();
  }

  private connect(): Promise<void> {
    this.connecting = this.doConnect().finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  private async doConnect(): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.connectionString,
      application_name: 'act-store-listen',
      // A half-open connection (no RST from a dead peer) must not hide notifications for long.
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    let dropped = false;
    const drop = (err?: Error) => {
      if (dropped) return;
      dropped = true;
      if (this.client === client) this.client = undefined;
      client.removeAllListeners('notification');
      // The socket is gone or broken; end() only frees it.
      void client.end().catch(() => undefined);
      if (err)
        this.opts.onError(new Error(`change feed: LISTEN connection lost: ${err.message}`, { cause: err }));
      this.scheduleReconnect();
    };
    client.on('error', (err) => drop(err));
    client.on('end', () => drop());
    client.on('notification', (n) => this.opts.channels.get(n.channel)?.(n.payload));
    try {
      await client.connect();
      for (const ch of this.opts.channels.keys()) await client.query(`LISTEN ${pg.escapeIdentifier(ch)}`);
    } catch (err) {
      drop();
      throw err;
    }
    if (this.closed) {
      dropped = true;
      await client.end().catch(() => undefined);
      return;
    }
    this.client = client;
    this.backoff = RECONNECT_MIN_MS;
    // Whatever was committed while we were not listening.
    this.wakeAll();
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnectTimer) return;
    const delay = this.backoff * (0.5 + Math.random() / 2);
    this.backoff = Math.min(RECONNECT_MAX_MS, this.backoff * 2);
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      if (this.closed) return;
      this.connect().catch((err: unknown) => {
        // doConnect's drop() has scheduled the next attempt already.
        this.opts.onError(
          new Error(`change feed: reconnect failed: ${(err as Error).message}`, { cause: err }),
        );
      });
    }, delay);
    this.reconnectTimer.unref();
  }
}
