// Typed loader for the native addon (native/blockgate_native.c, built by
// `npm run build` into build/Release/blockgate_native.node).
//
// Every function runs its system call on the libuv thread pool and returns a
// promise; failures reject with an Error carrying `code` ('EOPNOTSUPP',
// 'ENOTTY', ...), negative `errno` and `syscall`, like Node's fs errors, so
// callers can fall back on `code`. The addon is loaded lazily on first use:
// importing this module never fails; `nativeAvailable()` says whether it
// loaded, and calling a function when it did not throws the load error.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** posix_fadvise advice values (Linux). */
export const FADV = {
  NORMAL: 0,
  RANDOM: 1,
  SEQUENTIAL: 2,
  WILLNEED: 3,
  DONTNEED: 4,
  NOREUSE: 5,
} as const;

/** One run of bytes from scanExtents: data (allocated) or a hole. */
export interface FileExtent {
  readonly offset: number;
  readonly length: number;
  readonly data: boolean;
}

interface Addon {
  seekData(fd: number, offset: number): Promise<number>;
  seekHole(fd: number, offset: number): Promise<number>;
  scanExtents(fd: number, offset: number, length: number, maxCount: number): Promise<Float64Array>;
  punchHole(fd: number, offset: number, length: number): Promise<void>;
  zeroRange(fd: number, offset: number, length: number): Promise<void>;
  allocate(fd: number, offset: number, length: number): Promise<void>;
  blkZeroOut(fd: number, offset: number, length: number): Promise<void>;
  blkDiscard(fd: number, offset: number, length: number): Promise<void>;
  blockDeviceSize(fd: number): Promise<number>;
  fadvise(fd: number, offset: number, length: number, advice: number): Promise<void>;
  preadNoWait(fd: number, buffer: Buffer, bufOff: number, length: number, position: number): number;
  pwriteNoWait(fd: number, buffer: Buffer, bufOff: number, length: number, position: number): number;
  /** Absent when this Node does not export OpenSSL's SHA256. */
  sha256?(data: Uint8Array): Promise<Buffer>;
  preadVerify(fd: number, segments: VerifyList, unitBytes: number): Promise<Float64Array>;
  crc32c(buffer: Uint8Array, initial?: number): number;
  crc32cPath(): 'avx512' | 'sse42' | 'table';
}

/** Error thrown by the addon: a Node-style system error. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

let addon: Addon | undefined;
let addonPath: string | undefined;
let loadError: Error | undefined;

function candidates(): string[] {
  // This file lives in src/native/ (tests, via vite) or dist/native/ (built):
  // either way the repository root is two levels up.
  const here = dirname(fileURLToPath(import.meta.url));
  const root = join(here, '..', '..');
  // Development and test only: load this addon file first (e.g. a bundled benchmark); see docs/tuning.md.
  const fromEnv = process.env.BLOCKGATE_NATIVE_ADDON;
  return [
    ...(fromEnv ? [fromEnv] : []),
    join(root, 'build', 'Release', 'blockgate_native.node'),
    join(root, 'build', 'Debug', 'blockgate_native.node'),
  ];
}

function load(): Addon {
  if (addon) return addon;
  if (loadError) throw loadError;
  const require = createRequire(import.meta.url);
  const tried = candidates();
  for (const path of tried) {
    if (!existsSync(path)) continue;
    try {
      addon = require(path) as Addon;
      addonPath = path;
      return addon;
    } catch (err) {
      loadError = new Error(`cannot load native addon ${path}: ${(err as Error).message}`, { cause: err });
      throw loadError;
    }
  }
  loadError = new Error(`native addon not built (run \`npm run build\`); looked in: ${tried.join(', ')}`);
  throw loadError;
}

/** True when the addon is built and loads. */
export function nativeAvailable(): boolean {
  try {
    load();
    return true;
  } catch {
    return false;
  }
}

/** Where the addon was loaded from, or why it was not (for `blockgate status`). */
export function nativeAddonInfo(): { loaded: true; path: string } | { loaded: false; error: string } {
  try {
    load();
    return { loaded: true, path: addonPath! };
  } catch (err) {
    return { loaded: false, error: (err as Error).message };
  }
}

/** True for an error the addon (or fs) raised with this errno code. */
export function hasErrorCode(err: unknown, ...codes: string[]): err is NativeError {
  return typeof err === 'object' && err !== null && codes.includes((err as { code?: unknown }).code as string);
}

/** Codes meaning "this file system / device cannot do that operation". */
export const UNSUPPORTED_CODES = ['EOPNOTSUPP', 'ENOTSUP', 'ENOSYS', 'ENOTTY'] as const;

/** lseek(SEEK_DATA): offset of the first data byte at or after `offset`, or -1 if none (ENXIO). */
export function seekData(fd: number, offset: number): Promise<number> {
  return load().seekData(fd, offset);
}

/** lseek(SEEK_HOLE): offset of the first hole at or after `offset` (EOF counts as a hole), or -1 past EOF. */
export function seekHole(fd: number, offset: number): Promise<number> {
  return load().seekHole(fd, offset);
}

/**
 * Data/hole runs covering [offset, offset+length) (clipped to it), in one
 * thread-pool hop (a SEEK_DATA/SEEK_HOLE loop). Stops after maxCount runs
 * (capped at 65536), so may cover less than asked; always covers at least
 * one byte when length > 0. Offsets past EOF are reported as holes.
 */
export async function scanExtents(fd: number, offset: number, length: number, maxCount = 1024): Promise<FileExtent[]> {
  const raw = await load().scanExtents(fd, offset, length, maxCount);
  const out: FileExtent[] = [];
  for (let i = 0; i + 2 < raw.length; i += 3) {
    out.push({ offset: raw[i]!, length: raw[i + 1]!, data: raw[i + 2] === 1 });
  }
  return out;
}

/** fallocate(PUNCH_HOLE|KEEP_SIZE): deallocate; the range reads as zeros. On a block device: zero with unmap, no slow fallback. */
export function punchHole(fd: number, offset: number, length: number): Promise<void> {
  return load().punchHole(fd, offset, length);
}

/** fallocate(ZERO_RANGE|KEEP_SIZE): the range reads as zeros, space stays allocated (unwritten extents). */
export function zeroRange(fd: number, offset: number, length: number): Promise<void> {
  return load().zeroRange(fd, offset, length);
}

/** fallocate(KEEP_SIZE): allocate space for the range (existing data unchanged). */
export function allocate(fd: number, offset: number, length: number): Promise<void> {
  return load().allocate(fd, offset, length);
}

/** ioctl(BLKZEROOUT) on a block device; offset and length must be multiples of 512. */
export function blkZeroOut(fd: number, offset: number, length: number): Promise<void> {
  return load().blkZeroOut(fd, offset, length);
}

/** ioctl(BLKDISCARD) on a block device; offset and length must be multiples of 512. */
export function blkDiscard(fd: number, offset: number, length: number): Promise<void> {
  return load().blkDiscard(fd, offset, length);
}

/** ioctl(BLKGETSIZE64): size of a block device in bytes (ENOTTY on a regular file). */
export function blockDeviceSize(fd: number): Promise<number> {
  return load().blockDeviceSize(fd);
}

/** posix_fadvise(fd, offset, length, advice); length 0 means to the end of the file. */
export function fadvise(fd: number, offset: number, length: number, advice: number): Promise<void> {
  return load().fadvise(fd, offset, length, advice);
}

/**
 * SYNCHRONOUS preadv2(RWF_NOWAIT) on the calling thread: copies what the page
 * cache holds right now, never waits for I/O. Returns bytes read (possibly
 * short, 0 at EOF), or -1 when nothing could be read without waiting
 * (EAGAIN). Throws a NativeError otherwise (EOPNOTSUPP on kernels/files
 * without RWF_NOWAIT support).
 */
export function preadNoWait(fd: number, buffer: Buffer, bufOff: number, length: number, position: number): number {
  return load().preadNoWait(fd, buffer, bufOff, length, position);
}

/** SYNCHRONOUS pwritev2(RWF_NOWAIT): as preadNoWait, for writes (EOPNOTSUPP on e.g. ext4 buffered files). */
export function pwriteNoWait(fd: number, buffer: Buffer, bufOff: number, length: number, position: number): number {
  return load().pwriteNoWait(fd, buffer, bufOff, length, position);
}

/**
 * SHA-256 of `data` on the thread pool, reading it in place (no copy): the
 * caller must not modify `data` until the promise settles. Undefined when the
 * addon is missing or this Node does not export OpenSSL's SHA256.
 */
export function nativeSha256(): ((data: Uint8Array) => Promise<Buffer>) | undefined {
  try {
    return load().sha256;
  } catch {
    return undefined;
  }
}

/**
 * Slot reads for preadVerifyMany, flat: [buffer, length, position, crcs,
 * firstUnit] per read (at most 1024 reads).
 */
export type VerifyList = Array<Uint8Array | Uint32Array | number>;

/**
 * Several checked reads in ONE thread-pool job (each job costs the event
 * loop a queue and a wake-up). For each read: pread of all `length` bytes
 * into `buffer` (EIO at end of file), then CRC32C of each `unitBytes` unit
 * (the last may be short) compared with crcs[firstUnit + i]. Resolves a
 * Float64Array [result, errno] per read: result -1 when every unit matches,
 * else the index of the first unit that does not; errno 0, or the (positive)
 * errno of a failed read (see readError). Throws (synchronously) on
 * malformed arguments. `segments` and everything in it are referenced until
 * it settles; do not change them meanwhile.
 */
export function preadVerifyMany(fd: number, segments: VerifyList, unitBytes: number): Promise<Float64Array> {
  return load().preadVerify(fd, segments, unitBytes);
}

/** The Node-style error for an errno that preadVerifyMany reported for one read. */
export function readError(errno: number): NativeError {
  const code = Object.entries(osConstants.errno).find(([, v]) => v === errno)?.[0] ?? `E${errno}`;
  return Object.assign(new Error(`${code}, pread: ${errno === osConstants.errno.EIO ? 'input/output error (or unexpected end of file)' : 'read failed'}`), {
    code, errno: -errno, syscall: 'pread',
  });
}

/**
 * One checked read (preadVerifyMany with one segment): buffer[bufOff, bufOff
 * + length) from `position`. Resolves -1 when every unit matches, else the
 * index of the first unit that does not; rejects with the read's error.
 * Malformed arguments throw synchronously.
 */
export function preadVerify(
  fd: number, buffer: Buffer, bufOff: number, length: number, position: number, crcs: Uint32Array, firstUnit: number, unitBytes: number,
): Promise<number> {
  if (!(Number.isSafeInteger(bufOff) && bufOff >= 0 && bufOff + length <= buffer.length)) {
    throw new RangeError(`bufOff ${bufOff} + length ${length} is outside the ${buffer.length}-byte buffer`);
  }
  return preadVerifyMany(fd, [buffer.subarray(bufOff, bufOff + length), length, position, crcs, firstUnit], unitBytes).then(([bad, errno]) => {
    if (errno) throw readError(errno);
    return bad!;
  });
}

/**
 * The addon's CRC32C (Castagnoli; same values as @node-rs/crc32's crc32c),
 * synchronous, continuing from `initial` (the CRC of the bytes before):
 * ~56 GB/s on 1 MiB with AVX-512 (VPCLMULQDQ) where the CPU has it,
 * ~25 GB/s with SSE4.2; @node-rs/crc32 reaches ~7 GB/s.
 */
export function crc32c(buffer: Uint8Array, initial = 0): number {
  return load().crc32c(buffer, initial);
}

/** Which CRC32C code crc32c() runs in this process (the CPU's best, capped by BLOCKGATE_NATIVE_CRC). */
export function crc32cPath(): 'avx512' | 'sse42' | 'table' {
  return load().crc32cPath();
}
