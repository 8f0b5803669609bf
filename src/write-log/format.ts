// Write-log on-disk format v1: segment header, record header, checkpoint.
// The normative description is docs/formats/write-log.md; this file is the
// only code that knows byte layouts. Pure functions, no I/O.
//
// Invariants:
//   - every integer is little-endian; u64 fields hold safe integers (< 2^53),
//     a decoder treats a larger value as corruption;
//   - a record starts at an 8-byte-aligned file position and occupies
//     align8(RECORD_HEADER_BYTES + dataBytes) bytes (zero padding);
//   - a record's CRC32C covers its data and then its header with the crc
//     field zeroed, so a record torn anywhere in header or data fails the
//     check (the padding is not covered: it carries nothing);
//   - segment header and checkpoint carry their own CRC32C over their bytes.

import { createHash } from 'node:crypto';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { crc32c, crc32cTable } from '../util/crc32c.js';

export const FORMAT_VERSION = 1;

export const SEGMENT_MAGIC = Buffer.from('BGWLSEGM', 'latin1');
export const SEGMENT_HEADER_BYTES = 64;
export const CHECKPOINT_MAGIC = Buffer.from('BGWLCKPT', 'latin1');
export const CHECKPOINT_BYTES = 64;
/** 'BGWR' read as a little-endian u32. */
export const RECORD_MAGIC = 0x52574742;
export const RECORD_HEADER_BYTES = 48;
export const RECORD_ALIGN = 8;
/** Largest payload of one record (a WRITE's data or a MARKER's JSON). */
export const MAX_RECORD_DATA = 256 * 1024 * 1024;
export const MAX_MARKER_BYTES = 64 * 1024;
export const VOLUME_TAG_BYTES = 16;

export const RecordType = { Write: 1, Zero: 2, Trim: 3, Marker: 4 } as const;
export type RecordType = (typeof RecordType)[keyof typeof RecordType];
const TYPE_NAMES: Record<number, string> = { 1: 'WRITE', 2: 'ZERO', 3: 'TRIM', 4: 'MARKER' };
export function recordTypeName(type: number): string {
  return TYPE_NAMES[type] ?? `UNKNOWN(${type})`;
}

export function align8(n: number): number {
  return Math.ceil(n / RECORD_ALIGN) * RECORD_ALIGN;
}

/** Bytes a record with `dataBytes` of payload occupies in a segment. */
export function recordBytes(dataBytes: number): number {
  return align8(RECORD_HEADER_BYTES + dataBytes);
}

// ---------------------------------------------------------------- u64

const TWO32 = 2 ** 32;

function writeU64(buf: Buffer, pos: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`u64 field out of range: ${value}`);
  buf.writeUInt32LE(value % TWO32, pos);
  buf.writeUInt32LE(Math.floor(value / TWO32), pos + 4);
}

/** Reads a u64; returns -1 when it is not a safe integer (treated as corruption). */
function readU64(buf: Buffer, pos: number): number {
  const lo = buf.readUInt32LE(pos);
  const hi = buf.readUInt32LE(pos + 4);
  if (hi >= 0x200000) return -1;
  return hi * TWO32 + lo;
}

// ---------------------------------------------------------------- volume tag

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** 16 bytes naming the volume: the UUID's bytes if volumeId is a UUID, else SHA-256(volumeId)[0..16). */
export function volumeTag(volumeId: string): Buffer {
  if (UUID_RE.test(volumeId)) return Buffer.from(volumeId.replace(/-/g, ''), 'hex');
  return createHash('sha256').update(volumeId, 'utf8').digest().subarray(0, VOLUME_TAG_BYTES);
}

// ---------------------------------------------------------------- segment header

export interface SegmentHeader {
  readonly version: number;
  readonly volumeTag: Buffer;
  /** Segment sequence number (also in the file name); increases by one per new segment. */
  readonly segmentSeq: number;
  /** Sequence number the first record of this segment has (or would have, if empty). */
  readonly firstSeq: number;
  readonly createdMs: number;
}

export function encodeSegmentHeader(h: Omit<SegmentHeader, 'version'>): Buffer {
  const buf = Buffer.alloc(SEGMENT_HEADER_BYTES);
  SEGMENT_MAGIC.copy(buf, 0);
  buf.writeUInt16LE(FORMAT_VERSION, 8);
  buf.writeUInt16LE(SEGMENT_HEADER_BYTES, 10);
  buf.writeUInt32LE(0, 12);
  if (h.volumeTag.length !== VOLUME_TAG_BYTES) throw new RangeError('volume tag must be 16 bytes');
  h.volumeTag.copy(buf, 16);
  writeU64(buf, 32, h.segmentSeq);
  writeU64(buf, 40, h.firstSeq);
  writeU64(buf, 48, h.createdMs);
  buf.writeUInt32LE(crc32cTable(buf.subarray(0, 60)), 60);
  return buf;
}

/** Decodes a segment header; returns a reason string when the bytes are not a valid v1 header. */
export function decodeSegmentHeader(buf: Buffer): SegmentHeader | string {
  if (buf.length < SEGMENT_HEADER_BYTES) return `short header (${buf.length} bytes)`;
  if (!buf.subarray(0, 8).equals(SEGMENT_MAGIC)) return 'bad magic';
  if (buf.readUInt32LE(60) !== crc32cTable(buf.subarray(0, 60))) return 'header checksum mismatch';
  const version = buf.readUInt16LE(8);
  if (version !== FORMAT_VERSION) return `unsupported version ${version}`;
  if (buf.readUInt16LE(10) !== SEGMENT_HEADER_BYTES) return 'bad header size';
  const segmentSeq = readU64(buf, 32);
  const firstSeq = readU64(buf, 40);
  const createdMs = readU64(buf, 48);
  if (segmentSeq < 0 || firstSeq < 1 || createdMs < 0) return 'header field out of range';
  return { version, volumeTag: Buffer.from(buf.subarray(16, 32)), segmentSeq, firstSeq, createdMs };
}

export function segmentFileName(segmentSeq: number): string {
  return `seg-${segmentSeq.toString(16).padStart(16, '0')}.wlog`;
}

const SEGMENT_NAME_RE = /^seg-([0-9a-f]{16})\.wlog$/;
export function parseSegmentFileName(name: string): number | undefined {
  const m = SEGMENT_NAME_RE.exec(name);
  if (!m) return undefined;
  const n = Number.parseInt(m[1]!, 16);
  return Number.isSafeInteger(n) ? n : undefined;
}

// ---------------------------------------------------------------- records

export interface RecordHeader {
  readonly type: RecordType;
  readonly flags: number;
  readonly seq: number;
  /** WRITE/ZERO/TRIM: volume byte offset. MARKER: 0. */
  readonly offset: number;
  /** WRITE: data length; ZERO/TRIM: range length; MARKER: payload length. */
  readonly length: number;
  /** Payload bytes stored after the header (WRITE: length; ZERO/TRIM: 0; MARKER: JSON bytes). */
  readonly dataBytes: number;
  /** Highest seq the writer knew durable when it wrote this record (replay uses it to tell torn tails from lost synced data). */
  readonly syncedSeq: number;
  readonly crc: number;
}

export type RecordFields = Omit<RecordHeader, 'crc' | 'dataBytes'>;

/** CRC of a record's payload: the first half of the record CRC (computed once, at append time). */
export function dataCrc(data: Uint8Array | undefined): number {
  return data && data.length > 0 ? crc32c(data) : 0;
}

/** Encodes a record header; `payloadCrc` is dataCrc(data), `dataBytes` its length. */
export function encodeRecordHeader(r: RecordFields, dataBytes: number, payloadCrc: number, into?: Buffer): Buffer {
  const buf = into ?? Buffer.allocUnsafe(RECORD_HEADER_BYTES);
  buf.writeUInt32LE(RECORD_MAGIC, 0);
  buf.writeUInt8(r.type, 4);
  buf.writeUInt8(r.flags, 5);
  buf.writeUInt16LE(0, 6);
  buf.writeUInt32LE(dataBytes, 8);
  buf.writeUInt32LE(0, 12);
  writeU64(buf, 16, r.seq);
  writeU64(buf, 24, r.offset);
  writeU64(buf, 32, r.length);
  writeU64(buf, 40, r.syncedSeq);
  buf.writeUInt32LE(crc32cTable(buf.subarray(0, RECORD_HEADER_BYTES), payloadCrc), 12);
  return buf;
}

/**
 * Decodes and sanity-checks a record header (not its CRC: that needs the
 * data, see recordCrcOk). Returns a reason string when the bytes cannot be a
 * v1 record header.
 */
export function decodeRecordHeader(buf: Buffer, pos = 0): RecordHeader | string {
  if (buf.length - pos < RECORD_HEADER_BYTES) return 'short record header';
  if (buf.readUInt32LE(pos) !== RECORD_MAGIC) return 'bad record magic';
  const type = buf.readUInt8(pos + 4);
  const flags = buf.readUInt8(pos + 5);
  if (type < 1 || type > 4) return `unknown record type ${type}`;
  if (flags !== 0 || buf.readUInt16LE(pos + 6) !== 0) return 'reserved bits set';
  const dataBytes = buf.readUInt32LE(pos + 8);
  const crc = buf.readUInt32LE(pos + 12);
  const seq = readU64(buf, pos + 16);
  const offset = readU64(buf, pos + 24);
  const length = readU64(buf, pos + 32);
  const syncedSeq = readU64(buf, pos + 40);
  if (seq < 1 || offset < 0 || length < 0 || syncedSeq < 0 || syncedSeq >= seq) return 'record field out of range';
  if (dataBytes > MAX_RECORD_DATA) return 'record too large';
  switch (type) {
    case RecordType.Write:
      if (dataBytes !== length || length === 0) return 'WRITE length mismatch';
      break;
    case RecordType.Zero:
    case RecordType.Trim:
      if (dataBytes !== 0 || length === 0) return 'ZERO/TRIM with data';
      break;
    case RecordType.Marker:
      if (offset !== 0 || dataBytes !== length || dataBytes > MAX_MARKER_BYTES) return 'bad MARKER';
      break;
  }
  if (offset + length > Number.MAX_SAFE_INTEGER) return 'record range out of range';
  return { type: type as RecordType, flags, seq, offset, length, dataBytes, syncedSeq, crc };
}

/** True when `header` (48 raw bytes) and `data` carry the CRC in the header. */
export function recordCrcOk(header: Buffer, data: Uint8Array | undefined): boolean {
  const stored = header.readUInt32LE(12);
  const copy = Buffer.from(header.subarray(0, RECORD_HEADER_BYTES));
  copy.writeUInt32LE(0, 12);
  return crc32cTable(copy, dataCrc(data)) === stored;
}

// ---------------------------------------------------------------- checkpoint

export interface Checkpoint {
  readonly volumeTag: Buffer;
  /** Every record with seq <= releasedSeq is held by the object store (release() was called). */
  readonly releasedSeq: number;
  /** Segment number the next new segment gets (never reused). */
  readonly nextSegmentSeq: number;
}

export function encodeCheckpoint(c: Checkpoint): Buffer {
  const buf = Buffer.alloc(CHECKPOINT_BYTES);
  CHECKPOINT_MAGIC.copy(buf, 0);
  buf.writeUInt16LE(FORMAT_VERSION, 8);
  buf.writeUInt16LE(CHECKPOINT_BYTES, 10);
  c.volumeTag.copy(buf, 16);
  writeU64(buf, 32, c.releasedSeq);
  writeU64(buf, 40, c.nextSegmentSeq);
  buf.writeUInt32LE(crc32cTable(buf.subarray(0, 60)), 60);
  return buf;
}

export function decodeCheckpoint(buf: Buffer): Checkpoint | string {
  if (buf.length !== CHECKPOINT_BYTES) return `checkpoint is ${buf.length} bytes`;
  if (!buf.subarray(0, 8).equals(CHECKPOINT_MAGIC)) return 'bad checkpoint magic';
  if (buf.readUInt32LE(60) !== crc32cTable(buf.subarray(0, 60))) return 'checkpoint checksum mismatch';
  const version = buf.readUInt16LE(8);
  if (version !== FORMAT_VERSION) return `unsupported checkpoint version ${version}`;
  const releasedSeq = readU64(buf, 32);
  const nextSegmentSeq = readU64(buf, 40);
  if (releasedSeq < 0 || nextSegmentSeq < 0) return 'checkpoint field out of range';
  return { volumeTag: Buffer.from(buf.subarray(16, 32)), releasedSeq, nextSegmentSeq };
}

// ---------------------------------------------------------------- errors

/** The log's bytes are not what was written: CHECKSUM_MISMATCH with where and why. */
export function corruptError(message: string, details: Record<string, unknown>): BlockgateError {
  return new BlockgateError(ErrorCodes.CHECKSUM_MISMATCH, `write log corrupt: ${message}`, {
    details: { component: 'write-log', ...details },
  });
}
