// Chunk cache on-disk format (version 2): the slot file header and the index
// records. The only code that knows these byte layouts; docs/chunk-cache.md
// describes them. Stateless.
//
// Cache directory:
//   slots.dat   HEADER_BYTES header, then slot i at HEADER_BYTES + i * blockSize
//   index/      LevelDB: META_KEY → a copy of the slots.dat header;
//               ENTRY_PREFIX + <block key> → entry record
// Invariants:
//   - a cache is trusted only when the header in slots.dat decodes (magic,
//     version, its own CRC) and the index's META_KEY holds the same bytes; the
//     random instance id in it ties one index to one slot file;
//   - an entry record holds a CRC32C per UNIT_BYTES of the block, so a read of
//     part of a block verifies only the units it touches, and a slot whose
//     content is not what the record says is detected on read.

import { crc32c } from '../util/crc32c.js';

/**
 * 2: 4 KiB checksum units (1 had 64 KiB units: a 4 KiB read had to read and
 * check 64 KiB). A cache of another version is reset to empty on open.
 */
export const CACHE_FORMAT_VERSION = 2;
/** Slot file header size; slots start here (keeps slots 4 KiB aligned). */
export const HEADER_BYTES = 4096;
/**
 * Checksum granularity: one CRC32C per 4 KiB, the size of a typical NBD read
 * (a page), so a hit reads and checks only the pages it returns.
 */
export const UNIT_BYTES = 4 * 1024;
export const META_KEY = 'm:header';
export const ENTRY_PREFIX = 'e:';
/** Upper bound of ENTRY_PREFIX keys, for range iteration. */
export const ENTRY_END = 'e;';

// Header (little endian):
//   0 4 magic "BGCC"  4 4 version  8 4 header bytes  12 4 block size
//   16 4 unit bytes   20 4 checksum algorithm (1 = CRC32C)
//   24 16 instance id (random)     40 4 CRC32C of bytes 0..40
const MAGIC = 0x43434742; // "BGCC" read as u32 LE
const ALGO_CRC32C = 1;
export const HEADER_USED = 44;

export interface CacheHeader {
  version: number;
  blockSize: number;
  instanceId: Buffer;
}

export function encodeHeader(blockSize: number, instanceId: Buffer): Buffer {
  const b = Buffer.alloc(HEADER_USED);
  b.writeUInt32LE(MAGIC, 0);
  b.writeUInt32LE(CACHE_FORMAT_VERSION, 4);
  b.writeUInt32LE(HEADER_BYTES, 8);
  b.writeUInt32LE(blockSize, 12);
  b.writeUInt32LE(UNIT_BYTES, 16);
  b.writeUInt32LE(ALGO_CRC32C, 20);
  instanceId.copy(b, 24, 0, 16);
  b.writeUInt32LE(crc32c(b.subarray(0, 40)), 40);
  return b;
}

/**
 * The format version of a well-formed header (magic and header CRC good) of
 * any version, else undefined: tells "written by another blockgate version"
 * apart from damage.
 */
export function headerVersion(b: Buffer): number | undefined {
  if (b.length < HEADER_USED || b.readUInt32LE(0) !== MAGIC) return undefined;
  if (crc32c(b.subarray(0, 40)) !== b.readUInt32LE(40)) return undefined;
  return b.readUInt32LE(4);
}

/** The header, or a reason why this file cannot be trusted by this version. */
export function decodeHeader(b: Buffer): CacheHeader | string {
  if (b.length < HEADER_USED) return 'header is truncated';
  if (b.readUInt32LE(0) !== MAGIC) return 'bad magic';
  if (crc32c(b.subarray(0, 40)) !== b.readUInt32LE(40)) return 'header checksum mismatch (torn or corrupt)';
  const version = b.readUInt32LE(4);
  if (version !== CACHE_FORMAT_VERSION) return `format version ${version}, this blockgate uses ${CACHE_FORMAT_VERSION}`;
  if (b.readUInt32LE(8) !== HEADER_BYTES || b.readUInt32LE(16) !== UNIT_BYTES || b.readUInt32LE(20) !== ALGO_CRC32C) return 'incompatible layout';
  return { version, blockSize: b.readUInt32LE(12), instanceId: Buffer.from(b.subarray(24, 40)) };
}

// Entry record (little endian):
//   0 4 slot  4 4 size (bytes, <= block size)  8 8 last use (logical clock, f64)
//   16 4*n CRC32C of each UNIT_BYTES unit, n = ceil(size / UNIT_BYTES)
const ENTRY_FIXED = 16;

export interface EntryRecord {
  slot: number;
  size: number;
  lastUse: number;
  crcs: Uint32Array;
}

export function unitCount(size: number): number {
  return Math.ceil(size / UNIT_BYTES);
}

export function encodeEntry(r: EntryRecord): Buffer {
  const b = Buffer.allocUnsafe(ENTRY_FIXED + 4 * r.crcs.length);
  b.writeUInt32LE(r.slot, 0);
  b.writeUInt32LE(r.size, 4);
  b.writeDoubleLE(r.lastUse, 8);
  for (let i = 0; i < r.crcs.length; i++) b.writeUInt32LE(r.crcs[i]!, ENTRY_FIXED + 4 * i);
  return b;
}

/** The record, or undefined when the bytes are not a well-formed record. */
export function decodeEntry(b: Uint8Array): EntryRecord | undefined {
  if (b.length < ENTRY_FIXED) return undefined;
  const v = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  const size = v.readUInt32LE(4);
  const n = unitCount(size);
  if (v.length !== ENTRY_FIXED + 4 * n) return undefined;
  const lastUse = v.readDoubleLE(8);
  if (!Number.isFinite(lastUse)) return undefined;
  const crcs = new Uint32Array(n);
  for (let i = 0; i < n; i++) crcs[i] = v.readUInt32LE(ENTRY_FIXED + 4 * i);
  return { slot: v.readUInt32LE(0), size, lastUse, crcs };
}

/** CRC32C of every unit of `data`. */
export function unitCrcs(data: Uint8Array): Uint32Array {
  const crcs = new Uint32Array(unitCount(data.length));
  for (let i = 0; i < crcs.length; i++) crcs[i] = crc32c(data.subarray(i * UNIT_BYTES, (i + 1) * UNIT_BYTES));
  return crcs;
}

/**
 * Checks units [first, first + count) against `crcs`; `data` holds exactly
 * those units' bytes (the last unit of a block may be short).
 */
export function unitsMatch(data: Uint8Array, crcs: Uint32Array, first: number): boolean {
  if (data.length === 0) return true;
  if (data.length <= UNIT_BYTES) return crc32c(data) === crcs[first]; // one unit (a 4 KiB read): no subarray
  const count = unitCount(data.length);
  for (let i = 0; i < count; i++) {
    if (crc32c(data.subarray(i * UNIT_BYTES, (i + 1) * UNIT_BYTES)) !== crcs[first + i]) return false;
  }
  return true;
}
