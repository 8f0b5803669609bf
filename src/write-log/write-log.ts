// WriteLog: one volume's upload buffer. Writes are appended as records to
// segment files; an uploader reads them back (per block, as of a snapshot
// marker) and releases them once the object store holds them.
//
// States of the log: open -> closing (refuseAppends() or close(): waiting
// and new appends fail SHUTTING_DOWN; admitted records are still written)
// -> closed, or open -> failed (a write or fdatasync failed: the page cache
// no longer says what is on disk, so every later call throws the IO error;
// reopening replays what is there).
//
// A record goes: waiting (no space: FIFO `waiters`, no seq yet) -> queued
// (seq assigned, space reserved, in `queue`) -> written (in the segment
// file/page cache; append() resolves; in the index) -> durable (an
// fdatasync covered it; seq <= durableSeq) -> released (the object store
// holds it; seq <= releasedSeq; its segment is deleted once every record in
// it is released).
//
// Invariants:
//   - seqs are assigned in queue order and written in that order by a single
//     pump (one writev in flight), so writtenSeq is a prefix and there are no
//     holes: the log on disk is always records firstSeq..writtenSeq;
//   - every segment but the active one is durable in full: the pump
//     fdatasyncs a segment before writing the first record of the next one,
//     and the directory entry of a new segment is synced before use. Replay
//     therefore treats damage in a non-last segment as corruption, and in the
//     last segment as a torn tail unless a surviving record's syncedSeq hint
//     says the damaged record had been synced;
//   - durableSeq <= writtenSeq <= lastAssignedSeq; releasedSeq only grows and
//     is persisted in `checkpoint` before any segment is deleted;
//   - usedBytes (segment bytes + queued bytes) exceeds capacityBytes only by
//     a segment header or a marker (markers bypass backpressure so the
//     uploader can always cut a snapshot and drain a full log);
//   - every wait is bounded by something that drains: waiters by release()
//     or, when nothing will (an unreachable store), by refuseAppends()/close(),
//     queued bytes by the pump, sync rounds by one fdatasync.

import { join } from 'node:path';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { DirtyIndex, type DirtyPiece } from './dirty-index.js';
import {
  MAX_MARKER_BYTES, MAX_RECORD_DATA, RECORD_HEADER_BYTES, RecordType, SEGMENT_HEADER_BYTES, corruptError, dataCrc,
  decodeCheckpoint, encodeCheckpoint, encodeRecordHeader, encodeSegmentHeader, parseSegmentFileName, recordBytes,
  segmentFileName, volumeTag,
} from './format.js';
import { nodeLogIo, type LogFile, type LogIo } from './io.js';
import { WindowReader, readSegmentHeader, scanRecords, syncedHintAfter, type ScanEnd } from './scan.js';

export type { DirtyPiece } from './dirty-index.js';

export const DEFAULT_SEGMENT_BYTES = 64 * 1024 * 1024;
const MIN_SEGMENT_BYTES = 4096;
const MAX_BATCH_RECORDS = 256; // 3 iovecs each: stays under IOV_MAX (1024)
const MAX_BATCH_BYTES = 8 * 1024 * 1024;
const READ_CONCURRENCY = 8;
const ZERO_PAD = Buffer.alloc(8);
const CHECKPOINT = 'checkpoint';
const CHECKPOINT_TMP = 'checkpoint.tmp';

export interface WriteLogOptions {
  /** Bytes the log may use on disk; appends wait while it is full. */
  capacityBytes: number;
  /** The volume this log belongs to (UUID or name); a log of another volume refuses to open. */
  volumeId: string;
  logger?: Logger;
  /** Target segment size (default min(64 MiB, capacity/8), at least 4 KiB). A single larger record gets a segment of its own. */
  segmentBytes?: number;
  /** Bound on bytes admitted but not yet written (default 64 MiB). */
  maxQueuedBytes?: number;
  /** File-system operations (tests: counting, faults, simulated disk). */
  io?: LogIo;
}

export interface AppendZeroOptions {
  /** TRIM rather than ZERO (both read as zeros; TRIM lets the volume deallocate). */
  trim?: boolean;
}

export interface ReadOptions {
  /** Read as of this unreleased marker's seq instead of now. */
  asOf?: number;
}

export interface LogMarker {
  readonly seq: number;
  readonly payload: unknown;
}

export interface LogRecord {
  readonly seq: number;
  readonly type: 'write' | 'zero' | 'trim' | 'marker';
  /** Volume offset (0 for markers). */
  readonly offset: number;
  /** Range length (payload length for markers). */
  readonly length: number;
  /** WRITE data (a copy), when asked for. */
  readonly data?: Buffer;
  /** MARKER payload. */
  readonly payload?: unknown;
}

export interface DirtyBlock {
  readonly index: number;
  /** The log's pieces of this block (volume offsets), as of the marker asked for. */
  readonly pieces: DirtyPiece[];
  /** True when the pieces cover the whole block (the base block is not needed). */
  readonly covered: boolean;
}

export interface WriteLogUsage {
  usedBytes: number;
  capacityBytes: number;
  /** Unreleased records. */
  records: number;
  /** Oldest unreleased seq (newestSeq + 1 when none). */
  oldestSeq: number;
  /** Newest written seq. */
  newestSeq: number;
  durableSeq: number;
  releasedSeq: number;
  waitingWriters: number;
  queuedBytes: number;
  segments: number;
  markers: number;
  indexPieces: number;
}

export interface WriteLogStats {
  appends: number;
  appendedBytes: number;
  syncCalls: number;
  fdatasyncs: number;
  segmentsCreated: number;
  segmentsDeleted: number;
  backpressureWaits: number;
}

interface Segment {
  readonly segmentSeq: number;
  readonly path: string;
  readonly file: LogFile;
  readonly firstSeq: number;
  lastSeq: number;
  size: number;
  refs: number;
  deleted: boolean;
  closed: boolean;
}

interface Pending {
  readonly type: RecordType;
  readonly offset: number;
  readonly length: number;
  readonly data: Buffer | undefined;
  readonly payloadCrc: number;
  readonly bytes: number;
  readonly payload: unknown;
  readonly bypass: boolean;
  seq: number;
  resolve: (seq: number) => void;
  reject: (err: unknown) => void;
}

type State = 'open' | 'closing' | 'closed' | 'failed';

function invalid(message: string): BlockgateError {
  return new BlockgateError(ErrorCodes.INVALID_ARGUMENT, message);
}

/** lookup()'s answer when the log holds nothing unreleased (shared, never mutated). */
const NO_PIECES: readonly DirtyPiece[] = Object.freeze([]);

function checkRange(offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) throw invalid(`offset must be a non-negative integer, got ${offset}`);
  if (!Number.isSafeInteger(length) || length < 1) throw invalid(`length must be a positive integer, got ${length}`);
  if (offset + length > Number.MAX_SAFE_INTEGER) throw invalid('range end out of range');
}

export class WriteLog {
  private state: State = 'open';
  private failure: Error | undefined;
  private readonly segments: Segment[] = [];
  private active: Segment | undefined;
  private index = new DirtyIndex();
  private readonly bySegmentSeq = new Map<number, Segment>();
  private readonly markerMap = new Map<number, unknown>();
  private readonly queue: Pending[] = [];
  private waiters: Pending[] = [];
  /** refuseSpaceWaits() was called: appends that lack segment space fail instead of waiting. */
  private spaceWaitsRefused = false;
  private queuedBytes = 0;
  private segmentBytesTotal = 0;
  private lastAssignedSeq: number;
  private writtenSeq: number;
  private durable: number;
  private released: number;
  private nextSegmentSeq: number;
  private pumpActive = false;
  private pumpDone: Promise<void> = Promise.resolve();
  private syncing: Promise<number> | undefined;
  private nextRound: { promise: Promise<number>; resolve: (n: number) => void; reject: (e: unknown) => void } | undefined;
  private writtenWaiters: Array<{ seq: number; resolve: () => void; reject: (e: unknown) => void }> = [];
  private releaseChain: Promise<void> = Promise.resolve();
  private closeDone: Promise<void> | undefined;
  private readonly counters: WriteLogStats = {
    appends: 0, appendedBytes: 0, syncCalls: 0, fdatasyncs: 0, segmentsCreated: 0, segmentsDeleted: 0, backpressureWaits: 0,
  };

  private constructor(
    readonly dir: string,
    private readonly io: LogIo,
    private readonly log: Logger,
    private readonly tag: Buffer,
    readonly capacityBytes: number,
    readonly segmentBytes: number,
    private readonly maxQueuedBytes: number,
    private readonly unlock: () => Promise<void>,
    lastSeq: number,
    released: number,
    nextSegmentSeq: number,
  ) {
    this.lastAssignedSeq = lastSeq;
    this.writtenSeq = lastSeq;
    this.durable = lastSeq;
    this.released = released;
    this.nextSegmentSeq = nextSegmentSeq;
  }

  // ------------------------------------------------------------ open / replay

  /**
   * Opens (creating if needed) the log in `dir` and replays it: the index,
   * markers and seqs are rebuilt from the segments; a torn tail of the last
   * segment is cut off (logged); damage anywhere else is CHECKSUM_MISMATCH.
   * Everything replayed is made durable before open resolves.
   */
  static async open(dir: string, options: WriteLogOptions): Promise<WriteLog> {
    const { capacityBytes, volumeId } = options;
    if (!Number.isSafeInteger(capacityBytes) || capacityBytes < 2 * MIN_SEGMENT_BYTES) {
      throw invalid(`capacityBytes must be an integer >= ${2 * MIN_SEGMENT_BYTES}`);
    }
    if (typeof volumeId !== 'string' || volumeId.length === 0) throw invalid('volumeId is required');
    const segmentBytes = options.segmentBytes ?? Math.max(MIN_SEGMENT_BYTES, Math.min(DEFAULT_SEGMENT_BYTES, Math.floor(capacityBytes / 8)));
    if (!Number.isSafeInteger(segmentBytes) || segmentBytes < MIN_SEGMENT_BYTES || segmentBytes > capacityBytes) {
      throw invalid(`segmentBytes must be an integer in [${MIN_SEGMENT_BYTES}, capacityBytes]`);
    }
    const maxQueuedBytes = options.maxQueuedBytes ?? 64 * 1024 * 1024;
    const io = options.io ?? nodeLogIo;
    const log = (options.logger ?? silentLogger).child({ component: 'write-log', volume: volumeId });
    const tag = volumeTag(volumeId);

    await io.mkdirp(dir);
    const unlock = await io.lock(dir);
    const opened: Segment[] = [];
    try {
      const names = await io.list(dir);
      if (names.includes(CHECKPOINT_TMP)) await io.unlink(join(dir, CHECKPOINT_TMP));
      let released = 0;
      let nextSegmentSeq = 1;
      const cpBytes = await io.readFile(join(dir, CHECKPOINT));
      if (cpBytes) {
        const cp = decodeCheckpoint(cpBytes);
        if (typeof cp === 'string') throw corruptError(`checkpoint: ${cp}`, { dir });
        if (!cp.volumeTag.equals(tag)) throw invalid(`write log ${dir} belongs to another volume (not ${volumeId})`);
        released = cp.releasedSeq;
        nextSegmentSeq = cp.nextSegmentSeq;
      }
      const segNos = names.map(parseSegmentFileName).filter((n): n is number => n !== undefined).sort((a, b) => a - b);
      if (segNos.length > 0) nextSegmentSeq = Math.max(nextSegmentSeq, segNos[segNos.length - 1]! + 1);

      const index = new DirtyIndex();
      const markers = new Map<number, unknown>();
      let expectedSeq: number | undefined;
      let lastSeq = released;
      const toDelete: string[] = [];
      for (let i = 0; i < segNos.length; i++) {
        const segNo = segNos[i]!;
        const isLast = i === segNos.length - 1;
        const path = join(dir, segmentFileName(segNo));
        const file = await io.open(path, 'rw');
        const fileSize = await file.size();
        const reader = new WindowReader(file, fileSize);
        const header = await readSegmentHeader(reader);
        if (typeof header === 'string') {
          if (isLast && fileSize <= SEGMENT_HEADER_BYTES) {
            // Created, never written (a crash during roll): holds no record.
            log.warn('discarding segment with torn header', { segment: segNo, reason: header, fileSize });
            await file.close();
            await io.unlink(path);
            continue;
          }
          await file.close();
          throw corruptError(`segment ${segNo} header: ${header}`, { dir, segment: segNo });
        }
        if (!header.volumeTag.equals(tag)) {
          await file.close();
          throw invalid(`write log ${dir} segment ${segNo} belongs to another volume (not ${volumeId})`);
        }
        if (header.segmentSeq !== segNo) {
          await file.close();
          throw corruptError(`segment file ${segNo} says it is segment ${header.segmentSeq}`, { dir, segment: segNo });
        }
        if (expectedSeq === undefined ? header.firstSeq > released + 1 : header.firstSeq !== expectedSeq) {
          await file.close();
          throw corruptError(`segment ${segNo} starts at seq ${header.firstSeq}, expected ${expectedSeq ?? `<= ${released + 1}`} (a segment is missing)`, { dir, segment: segNo });
        }
        const seg: Segment = { segmentSeq: segNo, path, file, firstSeq: header.firstSeq, lastSeq: header.firstSeq - 1, size: SEGMENT_HEADER_BYTES, refs: 0, deleted: false, closed: false };
        opened.push(seg);
        const end: ScanEnd = { validEnd: SEGMENT_HEADER_BYTES, lastSeq: header.firstSeq - 1, maxSyncedHint: 0 };
        for await (const rec of scanRecords(reader, SEGMENT_HEADER_BYTES, header.firstSeq, end)) {
          const h = rec.header;
          if (h.seq <= released) continue;
          if (h.type === RecordType.Marker) {
            let payload: unknown;
            try {
              payload = JSON.parse(rec.data.toString('utf8'));
            } catch (err) {
              throw corruptError(`marker ${h.seq} payload is not JSON: ${errorMessage(err)}`, { dir, segment: segNo, seq: h.seq });
            }
            markers.set(h.seq, payload);
            index.addMarker(h.seq);
          } else {
            index.add({ start: h.offset, end: h.offset + h.length, seq: h.seq, kind: h.type === RecordType.Write ? 'data' : 'zero', segment: segNo, dataPos: rec.dataPos });
          }
        }
        if (end.bad) {
          const where = { dir, segment: segNo, pos: end.bad.pos, seq: end.bad.expectedSeq, reason: end.bad.reason };
          if (!isLast) throw corruptError(`segment ${segNo} (sealed, synced) damaged at byte ${end.bad.pos}: ${end.bad.reason}`, where);
          const after = await syncedHintAfter(reader, end.bad.pos);
          const hint = Math.max(end.maxSyncedHint, after.maxSyncedHint);
          if (hint >= end.bad.expectedSeq) {
            throw corruptError(`segment ${segNo} damaged at byte ${end.bad.pos} (seq ${end.bad.expectedSeq}), but a later record says seq ${hint} was synced: ${end.bad.reason}`, { ...where, syncedHint: hint });
          }
          log.warn('discarding torn tail of the write log', { ...where, droppedBytes: fileSize - end.bad.pos, laterValidRecords: after.validRecords });
        }
        if (end.validEnd !== fileSize) {
          await file.truncate(end.validEnd);
          await file.datasync();
        }
        seg.size = end.validEnd;
        seg.lastSeq = end.lastSeq;
        expectedSeq = end.lastSeq + 1;
        lastSeq = Math.max(lastSeq, end.lastSeq);
        const emptyNext = seg.lastSeq === seg.firstSeq - 1 && seg.firstSeq === released + 1;
        if (seg.lastSeq <= released && !emptyNext) {
          // Every record in it is released: a leftover of a crash during release().
          opened.pop();
          await file.close();
          toDelete.push(path);
        }
      }
      for (const path of toDelete) await io.unlink(path);
      // Everything replayed is durable from here on (it may so far have been
      // only in the page cache of a process that was killed).
      const last = opened[opened.length - 1];
      if (last) await last.file.datasync();

      const wl = new WriteLog(dir, io, log, tag, capacityBytes, segmentBytes, maxQueuedBytes, unlock, lastSeq, released, nextSegmentSeq);
      for (const seg of opened) {
        wl.segments.push(seg);
        wl.bySegmentSeq.set(seg.segmentSeq, seg);
        wl.segmentBytesTotal += seg.size;
      }
      wl.active = last;
      wl.index = index;
      for (const [seq, payload] of markers) wl.markerMap.set(seq, payload);
      if (!cpBytes) await wl.writeCheckpoint();
      log.info('write log opened', {
        dir, segments: opened.length, releasedSeq: released, newestSeq: lastSeq, usedBytes: wl.segmentBytesTotal, markers: markers.size,
      });
      return wl;
    } catch (err) {
      for (const seg of opened) await seg.file.close().catch(() => undefined);
      await unlock();
      throw err;
    }
  }

  // ------------------------------------------------------------ append

  /**
   * Appends a WRITE of `data` at volume `offset`. Resolves with the record's
   * seq once it is in the segment file (page cache), not necessarily durable
   * (see sync()). Waits while the log is full. The log keeps a reference to
   * `data` until the promise settles: the caller must not modify it.
   */
  append(offset: number, data: Buffer): Promise<number> {
    checkRange(offset, data.length);
    return this.enqueue(RecordType.Write, offset, data.length, data, undefined, false);
  }

  /** Appends a ZERO (or TRIM) of [offset, offset+length): no data, reads as zeros. */
  appendZero(offset: number, length: number, options: AppendZeroOptions = {}): Promise<number> {
    checkRange(offset, length);
    return this.enqueue(options.trim ? RecordType.Trim : RecordType.Zero, offset, length, undefined, undefined, false);
  }

  /**
   * Appends a snapshot MARKER carrying `payload` (JSON, <= 64 KiB). The
   * volume "as of" the marker is every record with a smaller seq. Markers
   * never wait for space (so an uploader can always cut a snapshot of a full
   * log and drain it).
   */
  appendMarker(payload: unknown): Promise<number> {
    let json: string;
    try {
      json = JSON.stringify(payload ?? null);
    } catch (err) {
      throw invalid(`marker payload is not JSON-serialisable: ${errorMessage(err)}`);
    }
    const data = Buffer.from(json, 'utf8');
    if (data.length > MAX_MARKER_BYTES) throw invalid(`marker payload is ${data.length} bytes (max ${MAX_MARKER_BYTES})`);
    return this.enqueue(RecordType.Marker, 0, data.length, data, JSON.parse(json) as unknown, true);
  }

  private enqueue(type: RecordType, offset: number, length: number, data: Buffer | undefined, payload: unknown, bypass: boolean): Promise<number> {
    this.checkUsable();
    const dataBytes = data?.length ?? 0;
    if (dataBytes > MAX_RECORD_DATA) throw invalid(`write of ${dataBytes} bytes exceeds the record limit ${MAX_RECORD_DATA}`);
    const bytes = recordBytes(dataBytes);
    if (!bypass && bytes + SEGMENT_HEADER_BYTES > this.capacityBytes) {
      throw invalid(`write of ${dataBytes} bytes can never fit in a write log of ${this.capacityBytes} bytes`);
    }
    return new Promise<number>((resolve, reject) => {
      const p: Pending = { type, offset, length, data, payloadCrc: dataCrc(data), bytes, payload, bypass, seq: 0, resolve, reject };
      if (bypass || (this.waiters.length === 0 && this.fits(bytes))) {
        this.admit(p);
      } else if (this.spaceWaitsRefused && !this.hasSpace(bytes)) {
        reject(new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'write log is closing: no space, and nothing will free any'));
      } else {
        this.counters.backpressureWaits++;
        this.waiters.push(p);
      }
    });
  }

  private usedBytes(): number {
    return this.segmentBytesTotal + this.queuedBytes;
  }

  /** Segment space for `bytes` (only the uploader's release() frees it). */
  private hasSpace(bytes: number): boolean {
    const used = this.usedBytes();
    return used + bytes <= this.capacityBytes || used === 0;
  }

  private fits(bytes: number): boolean {
    const space = this.hasSpace(bytes);
    const queue = this.queuedBytes + bytes <= this.maxQueuedBytes || this.queuedBytes === 0;
    return space && queue;
  }

  private admit(p: Pending): void {
    p.seq = ++this.lastAssignedSeq;
    this.queuedBytes += p.bytes;
    this.queue.push(p);
    this.counters.appends++;
    this.counters.appendedBytes += p.data?.length ?? 0;
    if (!this.pumpActive) {
      // The flag is cleared synchronously when the pump's loop sees an empty
      // queue, so a record admitted at any moment is either seen by the
      // running loop or starts a new one.
      this.pumpActive = true;
      this.pumpDone = this.pump();
    }
  }

  /** Admits waiting appends, in order, while they fit. */
  private wake(): void {
    while (this.waiters.length > 0 && this.state === 'open' && this.fits(this.waiters[0]!.bytes)) {
      this.admit(this.waiters.shift()!);
    }
    if (this.spaceWaitsRefused) this.dropSpaceWaiters();
  }

  /**
   * For a volume that is closing (its uploader has stopped, so nothing will
   * free segment space): appends that would wait for segment space fail with
   * SHUTTING_DOWN, now and later. Appends that fit, and waits for room in
   * the write queue (the pump drains it by itself), go on, so requests that
   * were in flight when the volume began closing still complete. Idempotent.
   */
  refuseSpaceWaits(): void {
    this.spaceWaitsRefused = true;
    this.dropSpaceWaiters();
  }

  private dropSpaceWaiters(): void {
    const shutting = new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'write log is closing: no space, and nothing will free any');
    this.waiters = this.waiters.filter((w) => {
      if (this.hasSpace(w.bytes)) return true;
      w.reject(shutting);
      return false;
    });
  }

  // The single writer. Clears pumpActive in the same synchronous step in
  // which it sees the queue empty: an `await` between the two would let an
  // admit() slip through unseen and leave its record queued forever (and a
  // late clear could let two pumps run at once).
  private async pump(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0 || this.state === 'failed') {
        this.pumpActive = false;
        return;
      }
      try {
        await this.writeBatch();
      } catch (err) {
        this.fail(err, 'writing records');
        this.pumpActive = false;
        return;
      }
    }
  }

  private async writeBatch(): Promise<void> {
    const first = this.queue[0]!;
    const a = this.active;
    if (!a || (a.lastSeq >= a.firstSeq && a.size + first.bytes > this.segmentBytes)) await this.roll(first.seq);
    const seg = this.active!;
    const batch: Pending[] = [];
    const bufs: Buffer[] = [];
    let bytes = 0;
    while (this.queue.length > 0 && batch.length < MAX_BATCH_RECORDS) {
      const q = this.queue[0]!;
      if (batch.length > 0 && (bytes + q.bytes > MAX_BATCH_BYTES || seg.size + bytes + q.bytes > this.segmentBytes)) break;
      this.queue.shift();
      batch.push(q);
      const dataBytes = q.data?.length ?? 0;
      bufs.push(encodeRecordHeader({ type: q.type, flags: 0, seq: q.seq, offset: q.offset, length: q.length, syncedSeq: this.durable }, dataBytes, q.payloadCrc));
      if (q.data && dataBytes > 0) bufs.push(q.data);
      const pad = q.bytes - RECORD_HEADER_BYTES - dataBytes;
      if (pad > 0) bufs.push(ZERO_PAD.subarray(0, pad));
      bytes += q.bytes;
    }
    const base = seg.size;
    try {
      await seg.file.writev(bufs, base);
    } catch (err) {
      const e = this.ioError(err, 'writing records');
      for (const q of batch) q.reject(e);
      throw e;
    }
    seg.size += bytes;
    this.segmentBytesTotal += bytes;
    this.queuedBytes -= bytes;
    let pos = base;
    for (const q of batch) {
      seg.lastSeq = q.seq;
      this.writtenSeq = q.seq;
      if (q.type === RecordType.Marker) {
        this.markerMap.set(q.seq, q.payload);
        this.index.addMarker(q.seq);
      } else {
        this.index.add({
          start: q.offset, end: q.offset + q.length, seq: q.seq, kind: q.type === RecordType.Write ? 'data' : 'zero',
          segment: seg.segmentSeq, dataPos: pos + RECORD_HEADER_BYTES,
        });
      }
      pos += q.bytes;
      q.resolve(q.seq);
    }
    if (this.writtenWaiters.length > 0) {
      const ready = this.writtenWaiters.filter((w) => w.seq <= this.writtenSeq);
      this.writtenWaiters = this.writtenWaiters.filter((w) => w.seq > this.writtenSeq);
      for (const w of ready) w.resolve();
    }
    this.wake();
  }

  /** Seals the active segment (durable first) and starts a new one whose first record is `firstSeq`. */
  private async roll(firstSeq: number): Promise<void> {
    const old = this.active;
    if (old) {
      await this.datasync(old);
      this.durable = Math.max(this.durable, old.lastSeq);
    }
    const segmentSeq = this.nextSegmentSeq++;
    const path = join(this.dir, segmentFileName(segmentSeq));
    const file = await this.io.open(path, 'create');
    const header = encodeSegmentHeader({ volumeTag: this.tag, segmentSeq, firstSeq, createdMs: Date.now() });
    try {
      // The header is made durable before any record goes in, so on replay a
      // bad header can only mean "created, never written" (then the file is
      // at most a header long) or damage.
      await file.writev([header], 0);
      this.counters.fdatasyncs++;
      await file.datasync();
      await this.io.syncDir(this.dir);
    } catch (err) {
      await file.close().catch(() => undefined);
      throw err;
    }
    const seg: Segment = { segmentSeq, path, file, firstSeq, lastSeq: firstSeq - 1, size: SEGMENT_HEADER_BYTES, refs: 0, deleted: false, closed: false };
    this.segments.push(seg);
    this.bySegmentSeq.set(segmentSeq, seg);
    this.segmentBytesTotal += seg.size;
    this.active = seg;
    this.counters.segmentsCreated++;
  }

  // ------------------------------------------------------------ sync

  /** Highest seq known durable (survives a power loss). */
  get durableSeq(): number {
    return this.durable;
  }

  /** Everything at or below this seq is held by the object store. */
  get releasedSeq(): number {
    return this.released;
  }

  /** Highest seq written to the log (newest record). */
  get newestSeq(): number {
    return this.writtenSeq;
  }

  /**
   * Makes every record appended before this call durable; resolves with the
   * new durableSeq. Group commit: concurrent calls share one fdatasync; a
   * call that arrives while one runs joins the next round (one fdatasync for
   * all of them).
   */
  sync(): Promise<number> {
    try {
      this.checkUsable(true);
    } catch (err) {
      return Promise.reject(err);
    }
    this.counters.syncCalls++;
    if (this.lastAssignedSeq <= this.durable) return Promise.resolve(this.durable);
    if (!this.syncing) return this.startRound();
    if (!this.nextRound) {
      let resolve!: (n: number) => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<number>((res, rej) => { resolve = res; reject = rej; });
      this.nextRound = { promise, resolve, reject };
    }
    return this.nextRound.promise;
  }

  private startRound(): Promise<number> {
    const round = (async () => {
      const target = this.lastAssignedSeq;
      await this.waitWritten(target);
      if (target > this.durable) {
        const seg = this.segmentHolding(target);
        if (seg) await this.datasync(seg);
        this.durable = Math.max(this.durable, target);
      }
      return this.durable;
    })();
    this.syncing = round;
    const next = (): void => {
      this.syncing = undefined;
      const waiting = this.nextRound;
      this.nextRound = undefined;
      if (!waiting) return;
      if (this.state === 'failed') waiting.reject(this.failure);
      else this.startRound().then(waiting.resolve, waiting.reject);
    };
    round.then(next, next);
    return round;
  }

  private segmentHolding(seq: number): Segment | undefined {
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const s = this.segments[i]!;
      if (s.firstSeq <= seq && seq <= s.lastSeq) return s;
    }
    return undefined; // released and deleted: held by the object store
  }

  private waitWritten(seq: number): Promise<void> {
    if (this.writtenSeq >= seq) return Promise.resolve();
    if (this.state === 'failed') return Promise.reject(this.failure);
    return new Promise<void>((resolve, reject) => this.writtenWaiters.push({ seq, resolve, reject }));
  }

  private async datasync(seg: Segment): Promise<void> {
    seg.refs++;
    try {
      this.counters.fdatasyncs++;
      await seg.file.datasync();
    } catch (err) {
      this.fail(err, 'fdatasync');
      throw this.failure;
    } finally {
      await this.unref(seg);
    }
  }

  // ------------------------------------------------------------ read back

  /** Unreleased markers, oldest first. */
  markers(): LogMarker[] {
    return [...this.markerMap].sort((a, b) => a[0] - b[0]).map(([seq, payload]) => ({ seq, payload }));
  }

  private checkAsOf(asOf: number | undefined): void {
    if (asOf === undefined) return;
    if (!this.markerMap.has(asOf)) {
      throw invalid(asOf <= this.released ? `marker ${asOf} is released` : `seq ${asOf} is not a marker of this log`);
    }
  }

  /** Which parts of [offset, offset+length) the log holds (now, or as of a marker), without reading. */
  lookup(offset: number, length: number, options: ReadOptions = {}): readonly DirtyPiece[] {
    checkRange(offset, length);
    this.checkAsOf(options.asOf);
    // Nothing unreleased (a drained log, the usual state on a cache-hit read path): the index is empty; no walk, no allocation.
    if (this.writtenSeq <= this.released) return NO_PIECES;
    return this.index.lookup(offset, length, options.asOf);
  }

  /**
   * Reads the parts of [offset, offset+length) that the log holds into
   * target[0..length) (data pieces by pread straight from the segment file,
   * zero pieces filled with zeros); bytes the log does not hold are left
   * untouched, so a caller overlays the log on base data it read (or reads
   * the base only for the gaps between the returned pieces).
   */
  async readDirty(offset: number, length: number, target: Buffer, options: ReadOptions = {}): Promise<DirtyPiece[]> {
    this.checkUsable(true);
    checkRange(offset, length);
    if (target.length < length) throw invalid(`target is ${target.length} bytes, ${length} needed`);
    this.checkAsOf(options.asOf);
    const pieces = this.index.lookup(offset, length, options.asOf);
    // Pin the segments before any await, so release() cannot close them under us.
    const pinned: Segment[] = [];
    const reads: Array<() => Promise<void>> = [];
    for (const p of pieces) {
      const at = p.offset - offset;
      if (p.kind === 'zero') {
        target.fill(0, at, at + p.length);
        continue;
      }
      const seg = this.bySegmentSeq.get(p.segment);
      if (!seg) throw new BlockgateError(ErrorCodes.IO, `write log segment ${p.segment} vanished under a read`);
      seg.refs++;
      pinned.push(seg);
      reads.push(async () => {
        const n = await seg.file.read(target, at, p.length, p.dataPos);
        if (n !== p.length) throw new BlockgateError(ErrorCodes.IO, `short read from write log segment ${p.segment}`);
      });
    }
    try {
      for (let i = 0; i < reads.length; i += READ_CONCURRENCY) {
        await Promise.all(reads.slice(i, i + READ_CONCURRENCY).map((r) => r()));
      }
    } finally {
      for (const seg of pinned) await this.unref(seg);
    }
    return pieces;
  }

  /**
   * Blocks (of `blockSize` bytes) that unreleased records up to marker
   * `asOf` (or all unreleased records) changed, sorted, each with the log's
   * pieces of it as of that marker. The uploader builds a block as: base
   * block (parent snapshot; skip when `covered`), then readBlock() on top.
   */
  changedBlocks(blockSize: number, options: ReadOptions = {}): DirtyBlock[] {
    if (!Number.isSafeInteger(blockSize) || blockSize < 1) throw invalid(`blockSize must be a positive integer, got ${blockSize}`);
    this.checkAsOf(options.asOf);
    return this.index.changedBlocks(blockSize, options.asOf).map((index) => {
      const pieces = this.index.lookup(index * blockSize, blockSize, options.asOf);
      let covered = 0;
      for (const p of pieces) covered += p.length;
      return { index, pieces, covered: covered === blockSize };
    });
  }

  /** readDirty() of block `index`: the log's content of that block as of the marker (or now) over `target`. */
  readBlock(index: number, blockSize: number, target: Buffer, options: ReadOptions = {}): Promise<DirtyPiece[]> {
    return this.readDirty(index * blockSize, blockSize, target, options);
  }

  /**
   * Records with seq > fromSeq (default: the released seq), in order, read
   * back from the segment files (CRC-checked again). For a stored volume's
   * startup (re-apply the log to the local disk) and for tools. Records
   * appended while iterating may or may not be included.
   */
  async *pendingRecords(fromSeq = this.released, options: { withData?: boolean } = {}): AsyncGenerator<LogRecord> {
    this.checkUsable(true);
    const segs = this.segments.filter((s) => s.lastSeq > fromSeq);
    for (const s of segs) s.refs++;
    try {
      for (const seg of segs) {
        const reader = new WindowReader(seg.file, seg.size);
        const end: ScanEnd = { validEnd: 0, lastSeq: 0, maxSyncedHint: 0 };
        for await (const rec of scanRecords(reader, SEGMENT_HEADER_BYTES, seg.firstSeq, end)) {
          const h = rec.header;
          if (h.seq <= fromSeq) continue;
          const type = h.type === RecordType.Write ? 'write' : h.type === RecordType.Zero ? 'zero' : h.type === RecordType.Trim ? 'trim' : 'marker';
          if (h.type === RecordType.Marker) {
            yield { seq: h.seq, type, offset: 0, length: h.length, payload: JSON.parse(rec.data.toString('utf8')) as unknown };
          } else if (h.type === RecordType.Write && options.withData) {
            yield { seq: h.seq, type, offset: h.offset, length: h.length, data: Buffer.from(rec.data) };
          } else {
            yield { seq: h.seq, type, offset: h.offset, length: h.length };
          }
        }
        if (end.bad && end.bad.pos < seg.size) {
          throw corruptError(`segment ${seg.segmentSeq} damaged at byte ${end.bad.pos} since it was opened: ${end.bad.reason}`, {
            dir: this.dir, segment: seg.segmentSeq, pos: end.bad.pos,
          });
        }
      }
    } finally {
      for (const s of segs) await this.unref(s);
    }
  }

  // ------------------------------------------------------------ release

  /**
   * Tells the log that the object store durably holds the volume as of
   * `uptoSeq` (normally a marker whose snapshot root is written). The volume
   * must read through the new base before calling this. Persists the
   * released seq, then deletes every segment all of whose records are
   * released and drops index entries <= uptoSeq (markers <= uptoSeq too);
   * waiting appends proceed as space frees.
   */
  release(uptoSeq: number): Promise<void> {
    const run = this.releaseChain.then(() => this.doRelease(uptoSeq));
    this.releaseChain = run.catch(() => undefined);
    return run;
  }

  private async doRelease(upto: number): Promise<void> {
    this.checkUsable(true);
    if (!Number.isSafeInteger(upto) || upto < 0) throw invalid(`release: seq must be a non-negative integer, got ${upto}`);
    if (upto > this.writtenSeq) throw invalid(`release: seq ${upto} is past the newest written record ${this.writtenSeq}`);
    if (upto <= this.released) return;
    this.released = upto;
    this.index.release(upto);
    for (const seq of [...this.markerMap.keys()]) if (seq <= upto) this.markerMap.delete(seq);
    await this.writeCheckpoint();
    const doomed = this.segments.filter((s) => s.lastSeq <= upto && (s !== this.active || (this.queue.length === 0 && !this.pumpActive)));
    for (const seg of doomed) {
      this.segments.splice(this.segments.indexOf(seg), 1);
      this.bySegmentSeq.delete(seg.segmentSeq);
      if (seg === this.active) this.active = undefined;
      this.segmentBytesTotal -= seg.size;
      seg.deleted = true;
    }
    for (const seg of doomed) {
      await this.io.unlink(seg.path);
      this.counters.segmentsDeleted++;
      await this.unref(seg, true);
    }
    this.log.debug('released', { releasedSeq: upto, segmentsDeleted: doomed.length, usedBytes: this.usedBytes() });
    this.wake();
  }

  private async writeCheckpoint(): Promise<void> {
    const bytes = encodeCheckpoint({ volumeTag: this.tag, releasedSeq: this.released, nextSegmentSeq: this.nextSegmentSeq });
    const tmp = join(this.dir, CHECKPOINT_TMP);
    const file = await this.io.open(tmp, 'create');
    try {
      await file.writev([bytes], 0);
      await file.datasync();
    } finally {
      await file.close();
    }
    await this.io.rename(tmp, join(this.dir, CHECKPOINT));
    await this.io.syncDir(this.dir);
  }

  private async unref(seg: Segment, dropping = false): Promise<void> {
    if (!dropping) seg.refs--;
    if (seg.refs === 0 && (seg.deleted || this.state === 'closed') && !seg.closed) {
      seg.closed = true;
      await seg.file.close().catch(() => undefined);
    }
  }

  // ------------------------------------------------------------ status / lifecycle

  usage(): WriteLogUsage {
    return {
      usedBytes: this.usedBytes(),
      capacityBytes: this.capacityBytes,
      records: this.writtenSeq - this.released,
      oldestSeq: this.released + 1,
      newestSeq: this.writtenSeq,
      durableSeq: this.durable,
      releasedSeq: this.released,
      waitingWriters: this.waiters.length,
      queuedBytes: this.queuedBytes,
      segments: this.segments.length,
      markers: this.markerMap.size,
      indexPieces: this.index.pieceCount,
    };
  }

  stats(): WriteLogStats {
    return { ...this.counters };
  }

  /**
   * First step of close(), also callable on its own (a daemon whose grace
   * period is over): appends waiting for space, and every later append or
   * marker, fail with SHUTTING_DOWN at once; records already admitted are
   * still written, and sync, reads and release() keep working until close().
   * Without this, a writer waiting for space that only the uploader can
   * free (an unreachable store) would wait forever. Idempotent.
   */
  refuseAppends(): void {
    if (this.state !== 'open') return;
    this.state = 'closing';
    const shutting = new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'write log is closing');
    for (const w of this.waiters.splice(0)) w.reject(shutting);
  }

  /**
   * Clean shutdown: refuses waiting appends (SHUTTING_DOWN), writes what is
   * queued, syncs, closes the files and the directory lock. Every call
   * returns the same promise.
   */
  close(): Promise<void> {
    this.closeDone ??= this.doClose();
    return this.closeDone;
  }

  private async doClose(): Promise<void> {
    const failed = this.state === 'failed';
    this.refuseAppends();
    try {
      if (!failed) {
        await this.pumpDone;
        await this.releaseChain;
        while (this.syncing) await this.syncing.catch(() => undefined);
        if (this.lastAssignedSeq > this.durable && this.state === 'closing') await this.startRound();
      }
    } finally {
      this.state = 'closed';
      for (const seg of this.segments) {
        if (seg.refs === 0 && !seg.closed) {
          seg.closed = true;
          await seg.file.close().catch(() => undefined);
        }
      }
      await this.unlock();
    }
  }

  private checkUsable(allowClosing = false): void {
    if (this.state === 'failed') throw this.failure!;
    if (this.state === 'closed' || (this.state === 'closing' && !allowClosing)) {
      throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `write log is ${this.state}`);
    }
  }

  private ioError(err: unknown, what: string): BlockgateError {
    if (err instanceof BlockgateError) return err;
    return new BlockgateError(ErrorCodes.IO, `write log ${what} failed: ${errorMessage(err)}`, { cause: err, details: { dir: this.dir } });
  }

  /** Poisons the log: after a failed write or fdatasync nothing it says about the disk can be trusted. */
  private fail(err: unknown, what: string): void {
    if (this.state === 'failed') return;
    this.failure = this.ioError(err, what);
    this.state = 'failed';
    this.log.error('write log failed; reopen to recover', { err: this.failure, what });
    for (const q of this.queue.splice(0)) q.reject(this.failure);
    for (const w of this.waiters.splice(0)) w.reject(this.failure);
    for (const w of this.writtenWaiters.splice(0)) w.reject(this.failure);
  }
}
