/**
 * The spool's in-memory index of unacked records: seq, segment, offset, frame size and a
 * shipping state per record, in typed-array columns of a ring (about 25 bytes a record, no
 * payloads), so a large backlog costs little memory. Entries are addressed by absolute
 * position: a position is never reused, so a stale batch can name entries already dropped.
 */
import type { FrameRef } from './segment-log';

export const PENDING = 0;
export const IN_FLIGHT = 1;
export const ACKED = 2;
export type EntryState = typeof PENDING | typeof IN_FLIGHT | typeof ACKED;

export class SpoolIndex {
  private cap = 1024;
  private seqs = new Float64Array(this.cap);
  private segs = new Uint32Array(this.cap);
  private offs = new Float64Array(this.cap);
  private sizes = new Uint32Array(this.cap);
  private states = new Uint8Array(this.cap);
  /** Absolute position of the oldest entry. */
  head = 0;
  /** Absolute position after the newest entry. */
  tail = 0;
  /** Sum of the frame sizes of all entries. */
  bytes = 0;

  get length(): number {
    return this.tail - this.head;
  }

  push(seq: number, ref: FrameRef): number {
    if (this.length === this.cap) this.grow();
    const i = this.tail % this.cap;
    this.seqs[i] = seq;
    this.segs[i] = ref.segment;
    this.offs[i] = ref.offset;
    this.sizes[i] = ref.size;
    this.states[i] = PENDING;
    this.bytes += ref.size;
    return this.tail++;
  }

  /** Removes the oldest entry. */
  shift(): void {
    this.bytes -= this.sizes[this.head % this.cap]!;
    this.head++;
  }

  seq(pos: number): number {
    return this.seqs[pos % this.cap]!;
  }

  segment(pos: number): number {
    return this.segs[pos % this.cap]!;
  }

  ref(pos: number): FrameRef {
    const i = pos % this.cap;
    return { segment: this.segs[i]!, offset: this.offs[i]!, size: this.sizes[i]! };
  }

  state(pos: number): EntryState {
    return this.states[pos % this.cap] as EntryState;
  }

  setState(pos: number, s: EntryState): void {
    this.states[pos % this.cap] = s;
  }

  private grow(): void {
    const cap = this.cap * 2;
    const copy = <T extends Float64Array | Uint32Array | Uint8Array>(from: T, to: T): T => {
      for (let p = this.head; p < this.tail; p++) to[p % cap] = from[p % this.cap]!;
      return to;
    };
    this.seqs = copy(this.seqs, new Float64Array(cap));
    this.segs = copy(this.segs, new Uint32Array(cap));
    this.offs = copy(this.offs, new Float64Array(cap));
    this.sizes = copy(this.sizes, new Uint32Array(cap));
    this.states = copy(this.states, new Uint8Array(cap));
    this.cap = cap;
  }
}
