// Sequential reading of one segment file: header, records, and the
// torn-tail analysis replay needs. No state beyond one read window.
//
// Invariants:
//   - a record is yielded only after its header decodes, its seq is the
//     expected next seq, it lies wholly inside the file and its CRC matches;
//   - the first record that fails any of these ends the scan; `bad` tells
//     where and why, and nothing after it is yielded (no resynchronising
//     past damage: a gap ends the log).

import { type LogFile } from './io.js';
import {
  RECORD_ALIGN, RECORD_HEADER_BYTES, RECORD_MAGIC, SEGMENT_HEADER_BYTES, decodeRecordHeader, decodeSegmentHeader,
  recordBytes, recordCrcOk, type RecordHeader, type SegmentHeader,
} from './format.js';

const WINDOW_BYTES = 4 * 1024 * 1024;

/** A read window over a file of known size; views it returns are valid until the next call. */
export class WindowReader {
  private buf = Buffer.alloc(0);
  private bufPos = 0;

  constructor(private readonly file: LogFile, readonly fileSize: number) {}

  /** `len` bytes at `pos`, or undefined if the file ends first. */
  async get(pos: number, len: number): Promise<Buffer | undefined> {
    if (pos + len > this.fileSize) return undefined;
    if (pos >= this.bufPos && pos + len <= this.bufPos + this.buf.length) {
      return this.buf.subarray(pos - this.bufPos, pos - this.bufPos + len);
    }
    if (len > WINDOW_BYTES) {
      const big = Buffer.allocUnsafe(len);
      const n = await this.file.read(big, 0, len, pos);
      return n === len ? big : undefined;
    }
    const want = Math.min(WINDOW_BYTES, this.fileSize - pos);
    if (this.buf.length < want) this.buf = Buffer.allocUnsafe(WINDOW_BYTES);
    const n = await this.file.read(this.buf, 0, want, pos);
    this.bufPos = pos;
    this.buf = this.buf.subarray(0, n);
    if (n < len) {
      this.buf = Buffer.alloc(0);
      return undefined;
    }
    return this.buf.subarray(0, len);
  }
}

export async function readSegmentHeader(reader: WindowReader): Promise<SegmentHeader | string> {
  const raw = await reader.get(0, SEGMENT_HEADER_BYTES);
  if (!raw) return `short header (${reader.fileSize} bytes)`;
  return decodeSegmentHeader(raw);
}

export interface ScannedRecord {
  readonly header: RecordHeader;
  /** File position of the record's header. */
  readonly pos: number;
  /** File position of its data. */
  readonly dataPos: number;
  /** The data: a view into the read window, valid only until the scan continues. */
  readonly data: Buffer;
}

export interface ScanEnd {
  /** File position just past the last valid record. */
  validEnd: number;
  /** Seq of the last valid record (expectedFirstSeq - 1 if none). */
  lastSeq: number;
  /** Highest syncedSeq hint among valid records. */
  maxSyncedHint: number;
  /** Set when the scan stopped before the end of the file. */
  bad?: { pos: number; reason: string; expectedSeq: number };
}

/** Yields the valid records of a segment from `start` in order; fills `end` when done. */
export async function* scanRecords(reader: WindowReader, start: number, expectedFirstSeq: number, end: ScanEnd): AsyncGenerator<ScannedRecord> {
  let pos = start;
  let expected = expectedFirstSeq;
  end.lastSeq = expectedFirstSeq - 1;
  end.maxSyncedHint = 0;
  end.validEnd = pos;
  delete end.bad;
  while (pos < reader.fileSize) {
    const stop = (reason: string): void => {
      end.bad = { pos, reason, expectedSeq: expected };
    };
    const rawHeader = await reader.get(pos, RECORD_HEADER_BYTES);
    if (!rawHeader) { stop('truncated record header'); return; }
    const header = decodeRecordHeader(rawHeader);
    if (typeof header === 'string') { stop(header); return; }
    if (header.seq !== expected) { stop(`sequence ${header.seq} where ${expected} was expected`); return; }
    const total = recordBytes(header.dataBytes);
    if (pos + RECORD_HEADER_BYTES + header.dataBytes > reader.fileSize) { stop('truncated record data'); return; }
    const whole = await reader.get(pos, RECORD_HEADER_BYTES + header.dataBytes);
    if (!whole) { stop('truncated record data'); return; }
    const data = whole.subarray(RECORD_HEADER_BYTES);
    if (!recordCrcOk(whole.subarray(0, RECORD_HEADER_BYTES), data)) { stop('record checksum mismatch'); return; }
    yield { header, pos, dataPos: pos + RECORD_HEADER_BYTES, data };
    end.maxSyncedHint = Math.max(end.maxSyncedHint, header.syncedSeq);
    end.lastSeq = header.seq;
    // The padding may be missing at the very end of a file (a write torn just
    // after the data); validEnd is still the aligned end, so the opener
    // extends the file to it and the next record starts aligned.
    pos += total;
    end.validEnd = pos;
    expected++;
  }
}

/**
 * After damage at `from`: the highest syncedSeq hint among records that
 * still look valid (magic + decodable header + CRC) anywhere in [from, end),
 * scanning every aligned position. If a surviving record says "seq S was
 * durable when I was written" and S reaches the damaged record, the damage
 * is to synced data, not a torn tail.
 */
export async function syncedHintAfter(reader: WindowReader, from: number): Promise<{ maxSyncedHint: number; validRecords: number }> {
  let maxSyncedHint = 0;
  let validRecords = 0;
  let pos = Math.ceil((from + 1) / RECORD_ALIGN) * RECORD_ALIGN;
  // Bounded: one step per 8 bytes of one segment.
  while (pos + RECORD_HEADER_BYTES <= reader.fileSize) {
    const raw = await reader.get(pos, Math.min(reader.fileSize - pos, 64 * 1024));
    if (!raw) break;
    let advanced = false;
    for (let off = 0; off + RECORD_HEADER_BYTES <= raw.length; off += RECORD_ALIGN) {
      if (raw.readUInt32LE(off) !== RECORD_MAGIC) continue;
      const at = pos + off;
      const header = decodeRecordHeader(Buffer.from(raw.subarray(off, off + RECORD_HEADER_BYTES)));
      if (typeof header === 'string' || at + RECORD_HEADER_BYTES + header.dataBytes > reader.fileSize) continue;
      const whole = await reader.get(at, RECORD_HEADER_BYTES + header.dataBytes);
      if (whole && recordCrcOk(whole.subarray(0, RECORD_HEADER_BYTES), whole.subarray(RECORD_HEADER_BYTES))) {
        validRecords++;
        maxSyncedHint = Math.max(maxSyncedHint, header.syncedSeq);
        pos = at + recordBytes(header.dataBytes);
      } else {
        pos = at + RECORD_ALIGN;
      }
      advanced = true;
      break;
    }
    if (!advanced) pos += Math.max(RECORD_ALIGN, Math.floor((raw.length - RECORD_HEADER_BYTES) / RECORD_ALIGN) * RECORD_ALIGN + RECORD_ALIGN);
  }
  return { maxSyncedHint, validRecords };
}
