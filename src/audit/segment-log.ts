/**
 * Append-only, CRC-framed segment files in one directory (`seg-00000001.log`, …): the storage
 * under the audit spool. A frame is [u32 LE payload length][u32 LE CRC32 of payload][payload].
 * Frames are written with `writeSync` on an O_APPEND fd, so a frame is in the kernel when
 * `append` returns; `sync()` / `syncNow()` make it durable. Files are only ever appended to,
 * truncated at a torn tail on recovery, or deleted whole, so no crash can corrupt what was
 * already written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as zlib from 'node:zlib';

/** Where one frame lives: segment id, byte offset of the frame header, frame size (header included). */
export interface FrameRef {
  segment: number;
  offset: number;
  size: number;
}

export interface SegmentLogOptions {
  /** Rotate to a new segment before a write that would take the current one past this size. Default 8 MiB. */
  segmentBytes?: number;
}

/** What recovery found and did; nothing is thrown away without appearing here. */
export interface RecoveryReport {
  /** Segments found (after recovery). */
  segments: number;
  /** Valid frames found. */
  frames: number;
  /** A torn write at the end of the newest segment, truncated away. */
  tornTail?: { segment: string; offset: number; droppedBytes: number };
  /**
   * Older segments with a bad frame: the damaged file was renamed to `movedTo`, its valid prefix
   * (`validBytes`) kept under the original name; `droppedBytes` from the bad frame on are not read.
   */
  corrupt: { segment: string; movedTo: string; validBytes: number; droppedBytes: number }[];
}

export const FRAME_HEADER_BYTES = 8;
/** Larger lengths are treated as corruption: no audit record comes near this. */
const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;
const SEGMENT_RE = /^seg-(\d{8})\.log$/;

const segmentName = (id: number): string => `seg-${String(id).padStart(8, '0')}.log`;

/** fsync a directory so created, renamed and deleted entries survive a power loss. */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Encodes one frame. */
export function encodeFrame(payload: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(FRAME_HEADER_BYTES + payload.length);
  frame.writeUInt32LE(payload.length, 0);
  frame.writeUInt32LE(zlib.crc32(payload), 4);
  frame.set(payload, FRAME_HEADER_BYTES);
  return frame;
}

/** Length of the valid frame at `offset` of `buf`, or 0 when it is torn or corrupt. */
function validFrameAt(buf: Buffer, offset: number): number {
  if (buf.length - offset < FRAME_HEADER_BYTES) return 0;
  const len = buf.readUInt32LE(offset);
  // A zero length is never written (records are non-empty) but is what a zero-filled tail looks like.
  if (len === 0 || len > MAX_PAYLOAD_BYTES || offset + FRAME_HEADER_BYTES + len > buf.length) return 0;
  const payload = buf.subarray(offset + FRAME_HEADER_BYTES, offset + FRAME_HEADER_BYTES + len);
  return zlib.crc32(payload) === buf.readUInt32LE(offset + 4) ? FRAME_HEADER_BYTES + len : 0;
}

export class SegmentLog {
  private fd: number;
  private size: number;
  /** fds with an fdatasync in flight, and how many. */
  private readonly syncing = new Map<number, number>();
  /** Rotated-away fds to close once their in-flight syncs finish. */
  private readonly retired = new Set<number>();
  private closed = false;
  private broken = false;

  private constructor(
    readonly dir: string,
    private readonly segmentBytes: number,
    private readonly ids: number[],
  ) {
    const current = ids[ids.length - 1]!;
    this.fd = fs.openSync(this.pathOf(current), 'a');
    this.size = fs.fstatSync(this.fd).size;
  }

  /**
   * Opens (creating) the log in `dir` and recovers it: every valid frame is passed to `visit`
   * in order; a torn tail of the newest segment is truncated; an older segment with a bad frame
   * is moved aside to `<name>.corrupt` and its valid prefix kept. Every segment is fdatasync'd,
   * so all frames visited are durable when this returns.
   */
  static open(
    dir: string,
    opts: SegmentLogOptions,
    visit: (ref: FrameRef, payload: Buffer) => void,
  ): { log: SegmentLog; report: RecoveryReport } {
    fs.mkdirSync(dir, { recursive: true });
    const ids = fs
      .readdirSync(dir)
      .map((f) => SEGMENT_RE.exec(f))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]))
      .sort((a, b) => a - b);
    const report: RecoveryReport = { segments: 0, frames: 0, corrupt: [] };
    let dirChanged = false;
    if (ids.length === 0) {
      fs.closeSync(fs.openSync(path.join(dir, segmentName(1)), 'a'));
      ids.push(1);
      dirChanged = true;
    }
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const file = path.join(dir, segmentName(id));
      const newest = i === ids.length - 1;
      const fd = fs.openSync(file, 'r+');
      try {
        const buf = Buffer.allocUnsafe(fs.fstatSync(fd).size);
        let got = 0;
        while (got < buf.length) {
          const n = fs.readSync(fd, buf, got, buf.length - got, got);
          if (n === 0) break;
          got += n;
        }
        const data = buf.subarray(0, got);
        let off = 0;
        for (let n = validFrameAt(data, off); n > 0; n = validFrameAt(data, off)) {
          visit({ segment: id, offset: off, size: n }, data.subarray(off + FRAME_HEADER_BYTES, off + n));
          report.frames++;
          off += n;
        }
        if (off < data.length && newest) {
          // A write cut short by a crash: nothing after it was ever acknowledged as a whole frame.
          fs.ftruncateSync(fd, off);
          report.tornTail = { segment: segmentName(id), offset: off, droppedBytes: data.length - off };
        } else if (off < data.length) {
          const movedTo = `${segmentName(id)}.corrupt`;
          fs.closeSync(fd);
          fs.renameSync(file, path.join(dir, movedTo));
          fs.writeFileSync(file, data.subarray(0, off));
          report.corrupt.push({
            segment: segmentName(id),
            movedTo,
            validBytes: off,
            droppedBytes: data.length - off,
          });
          dirChanged = true;
          const copy = fs.openSync(file, 'r+');
          fs.fdatasyncSync(copy);
          fs.closeSync(copy);
          continue;
        }
        // Frames left in the page cache by a crashed process become durable before we rely on them.
        fs.fdatasyncSync(fd);
      } catch (err) {
        try {
          fs.closeSync(fd);
        } catch {
          // Already closed on the corrupt-segment path; the original error is the one to report.
        }
        throw err;
      }
      fs.closeSync(fd);
    }
    if (dirChanged) fsyncDir(dir);
    report.segments = ids.length;
    const segmentBytes = opts.segmentBytes ?? 8 * 1024 * 1024;
    return { log: new SegmentLog(dir, segmentBytes, ids), report };
  }

  /** The segment being written (the newest). */
  get currentSegment(): number {
    return this.ids[this.ids.length - 1]!;
  }

  /** Segment ids, oldest first. */
  segmentIds(): readonly number[] {
    return this.ids;
  }

  /** Bytes in the current segment. */
  get currentBytes(): number {
    return this.size;
  }

  /**
   * Writes one frame (rotating first when the segment is full); the frame is in the kernel when
   * this returns. On a failed write the segment is truncated back, so no partial frame stays
   * in front of later ones.
   */
  append(payload: Uint8Array): FrameRef {
    this.assertOpen();
    const frame = encodeFrame(payload);
    if (this.size > 0 && this.size + frame.length > this.segmentBytes) this.rotate();
    const offset = this.size;
    try {
      let done = 0;
      while (done < frame.length) done += fs.writeSync(this.fd, frame, done, frame.length - done);
    } catch (err) {
      try {
        fs.ftruncateSync(this.fd, offset);
      } catch {
        // A partial frame may now sit in front of later ones: refuse further writes. Reopening
        // recovers (the torn tail is truncated). The write's error is the one to report.
        this.broken = true;
      }
      throw err;
    }
    this.size += frame.length;
    return { segment: this.currentSegment, offset, size: frame.length };
  }

  /**
   * Writes several frames in order with one write per segment they go into (rotating when the
   * next does not fit, as `append` would); each written frame is in the kernel when this returns.
   * Returns the refs of the frames written, a prefix of `payloads`: on a failed write the rest is
   * not written (the segment is truncated back to before the failed write) and `error` says why.
   */
  appendMany(payloads: readonly Uint8Array[]): { refs: FrameRef[]; error?: unknown } {
    this.assertOpen();
    const frames = payloads.map(encodeFrame);
    const refs: FrameRef[] = [];
    let i = 0;
    while (i < frames.length) {
      if (this.size > 0 && this.size + frames[i]!.length > this.segmentBytes) {
        try {
          this.rotate();
        } catch (error) {
          return { refs, error };
        }
      }
      // The run of frames that fits in this segment (at least one).
      let j = i;
      let bytes = 0;
      do bytes += frames[j++]!.length;
      while (j < frames.length && this.size + bytes + frames[j]!.length <= this.segmentBytes);
      const run = j - i === 1 ? frames[i]! : Buffer.concat(frames.slice(i, j), bytes);
      const offset = this.size;
      try {
        let done = 0;
        while (done < run.length) done += fs.writeSync(this.fd, run, done, run.length - done);
      } catch (error) {
        try {
          fs.ftruncateSync(this.fd, offset);
        } catch {
          this.broken = true; // as in append()
        }
        return { refs, error };
      }
      let at = offset;
      for (let k = i; k < j; k++) {
        refs.push({ segment: this.currentSegment, offset: at, size: frames[k]!.length });
        at += frames[k]!.length;
      }
      this.size += bytes;
      i = j;
    }
    return { refs };
  }

  /**
   * Starts a new segment. The old one is fdatasync'd first and the directory after creating
   * the new one, so a later `sync()` of the new segment covers everything written before it.
   */
  rotate(): void {
    this.assertOpen();
    fs.fdatasyncSync(this.fd);
    this.retire(this.fd);
    const id = this.currentSegment + 1;
    this.fd = fs.openSync(this.pathOf(id), 'a');
    this.size = 0;
    this.ids.push(id);
    fsyncDir(this.dir);
  }

  /** fdatasync of the current segment on the threadpool. */
  sync(): Promise<void> {
    this.assertOpen();
    const fd = this.fd;
    this.syncing.set(fd, (this.syncing.get(fd) ?? 0) + 1);
    return new Promise((resolve, reject) => {
      fs.fdatasync(fd, (err) => {
        const left = (this.syncing.get(fd) ?? 1) - 1;
        if (left > 0) this.syncing.set(fd, left);
        else {
          this.syncing.delete(fd);
          if (this.retired.delete(fd)) fs.closeSync(fd);
        }
        if (err) reject(err);
        else resolve();
      });
    });
  }

  /** fdatasync of the current segment, blocking. */
  syncNow(): void {
    this.assertOpen();
    fs.fdatasyncSync(this.fd);
  }

  /** Reads the payloads of frames (any order); adjacent frames of a segment are read in one call. */
  read(refs: readonly FrameRef[]): Buffer[] {
    const out: Buffer[] = new Array<Buffer>(refs.length);
    let i = 0;
    while (i < refs.length) {
      const first = refs[i]!;
      let j = i + 1;
      let end = first.offset + first.size;
      while (j < refs.length && refs[j]!.segment === first.segment && refs[j]!.offset === end) {
        end += refs[j]!.size;
        j++;
      }
      const buf = Buffer.allocUnsafe(end - first.offset);
      const fd = fs.openSync(this.pathOf(first.segment), 'r');
      try {
        let got = 0;
        while (got < buf.length) {
          const n = fs.readSync(fd, buf, got, buf.length - got, first.offset + got);
          if (n === 0) throw new Error(`${segmentName(first.segment)}: short read at ${first.offset + got}`);
          got += n;
        }
      } finally {
        fs.closeSync(fd);
      }
      for (let k = i; k < j; k++) {
        const r = refs[k]!;
        const at = r.offset - first.offset;
        out[k] = buf.subarray(at + FRAME_HEADER_BYTES, at + r.size);
      }
      i = j;
    }
    return out;
  }

  /** Deletes whole segments (never the current one), then fsyncs the directory. */
  remove(ids: readonly number[]): void {
    const drop = new Set(ids.filter((id) => id !== this.currentSegment));
    if (drop.size === 0) return;
    for (const id of drop) fs.rmSync(this.pathOf(id), { force: true });
    const keep = this.ids.filter((id) => !drop.has(id));
    this.ids.length = 0;
    this.ids.push(...keep);
    fsyncDir(this.dir);
  }

  /** Final fdatasync and close. Waits for nothing: call after in-flight `sync()`s settle. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      fs.fdatasyncSync(this.fd);
    } finally {
      fs.closeSync(this.fd);
      for (const fd of this.retired) fs.closeSync(fd);
      this.retired.clear();
    }
  }

  private retire(fd: number): void {
    if (this.syncing.has(fd)) this.retired.add(fd);
    else fs.closeSync(fd);
  }

  private pathOf(id: number): string {
    return path.join(this.dir, segmentName(id));
  }

  private assertOpen(): void {
    if (this.closed) throw new Error('segment log is closed');
    if (this.broken) throw new Error('segment log is broken by a failed write; reopen to recover');
  }
}
