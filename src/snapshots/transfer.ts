// Image transfer: upload a file/block device (uploadImage) or any readable
// (uploadReadable) as a snapshot, download (restore) a snapshot to a file or
// block device (downloadSnapshot). Reused by the volume engines.
// Upload states: reading → (blocks in flight, bounded) → completing → done |
// aborted (session markers removed; written objects left for GC).
// Invariants:
//   - at most `concurrency` blocks in flight plus `concurrency` queued: the
//     reader awaits admission (backpressure), so memory is O(concurrency ×
//     block + one 4 MiB read chunk);
//   - zero blocks are never uploaded; with a parent, a block whose content
//     address equals the parent's at that index is not put at all, so an
//     incremental upload sends O(changed blocks) bytes;
//   - download to a regular file leaves zero blocks as holes (full restore
//     truncates first); to a block device zero blocks are written as zeros
//     unless the target already reads as zeros (incremental);
//   - incremental download reads and hashes each target block and writes
//     only blocks whose content differs from the snapshot's.

import { open, readFile, type FileHandle } from 'node:fs/promises';
import type { Stats } from 'node:fs';
import { createHash } from 'node:crypto';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { WorkPool } from './bounded.js';
import { BLOCK_HEADER, blockCount, blockHashFromDigest, isZero, type SnapshotRoot } from './format.js';
import { sha256Async } from '../util/sha256.js';
import type { SnapshotStore } from './snapshot-store.js';

export interface TransferProgress {
  /** Bytes of the image/target examined so far. */
  doneBytes: number;
  totalBytes: number;
  /** Bytes sent to / fetched from the store (plaintext). */
  transferredBytes: number;
  changedBlocks: number;
}

export interface UploadImageOptions {
  volume?: string;
  parent?: string;
  blockSize?: number;
  description?: string;
  /** Blocks in flight (default: the store's concurrency). */
  concurrency?: number;
  onProgress?: (p: TransferProgress) => void;
  signal?: AbortSignal;
}

export interface UploadResult {
  root: SnapshotRoot;
  changedBlocks: number;
  zeroBlocks: number;
  unchangedBlocks: number;
  uploadedBytes: number;
  storedBytes: number;
  elapsedMs: number;
}

/** Image bytes read per call (a whole number of blocks at most block sizes). */
const READ_CHUNK = 4 * 1024 * 1024;
/** Blocks hashed ahead of the upload decision (thread-pool jobs in flight). */
const HASH_AHEAD = 8;

async function deviceSize(path: string, st: Stats, fh: FileHandle): Promise<number> {
  if (!st.isBlockDevice()) return st.size;
  const rdev = st.rdev;
  const major = (rdev >> 8) & 0xfff;
  const minor = (rdev & 0xff) | ((rdev >> 12) & 0xfff00);
  try {
    const sectors = Number((await readFile(`/sys/dev/block/${major}:${minor}/size`, 'utf8')).trim());
    if (Number.isSafeInteger(sectors)) return sectors * 512;
  } catch { /* fall through */ }
  void fh;
  throw new BlockgateError(ErrorCodes.NOT_SUPPORTED, `cannot determine the size of block device ${path}`);
}

function ioError(path: string, err: unknown): BlockgateError {
  const e = err as NodeJS.ErrnoException;
  return new BlockgateError(e.code === 'ENOENT' ? ErrorCodes.INVALID_ARGUMENT : ErrorCodes.IO, `${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, { cause: err });
}

async function readFully(fh: FileHandle, buf: Buffer, position: number): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const { bytesRead } = await fh.read(buf, got, buf.length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Uploads the file or block device at `path` as a new snapshot. */
export async function uploadImage(snaps: SnapshotStore, path: string, options: UploadImageOptions = {}): Promise<UploadResult> {
  const t0 = Date.now();
  let fh: FileHandle;
  try { fh = await open(path, 'r'); } catch (err) { throw ioError(path, err); }
  try {
    const st = await fh.stat();
    if (!st.isFile() && !st.isBlockDevice()) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${path} is not a regular file or block device`);
    const size = await deviceSize(path, st, fh);
    let chunk = Buffer.alloc(0);
    let chunkStart = 0;
    let chunkEnd = 0;
    return await uploadBlocks(snaps, size, options, async (i, bs, len) => {
      if (i >= chunkEnd) {
        // Read ahead up to READ_CHUNK bytes in one call (fewer thread-pool hops); blocks are views into it.
        chunkStart = i;
        const bytes = Math.min(Math.max(bs, READ_CHUNK), size - i * bs);
        chunk = Buffer.allocUnsafe(bytes);
        const got = await readFully(fh, chunk, i * bs);
        if (got !== bytes) throw new BlockgateError(ErrorCodes.IO, `${path}: short read at block ${i} (image changed size while reading?)`);
        chunkEnd = i + Math.ceil(bytes / bs);
      }
      return chunk.subarray((i - chunkStart) * bs, (i - chunkStart) * bs + len);
    }, t0);
  } finally {
    await fh.close();
  }
}

/**
 * Uploads `size` bytes from a readable (stream, async iterable of Buffers)
 * as a new snapshot. The stream must yield exactly `size` bytes.
 */
export async function uploadReadable(snaps: SnapshotStore, source: AsyncIterable<Buffer | Uint8Array>, size: number, options: UploadImageOptions = {}): Promise<UploadResult> {
  const t0 = Date.now();
  const it = source[Symbol.asyncIterator]();
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let ended = false;
  try {
    return await uploadBlocks(snaps, size, options, async (i, _bs, len) => {
      while (pendingBytes < len && !ended) {
        const r = await it.next();
        if (r.done) { ended = true; break; }
        const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value.buffer, r.value.byteOffset, r.value.byteLength);
        pending.push(b);
        pendingBytes += b.length;
      }
      if (pendingBytes < len) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `source ended at block ${i}: fewer than the ${size} bytes announced`);
      const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
      const block = Buffer.from(all.subarray(0, len)); // own copy: the stream may reuse its buffers
      const rest = all.subarray(len);
      pending = rest.length ? [rest] : [];
      pendingBytes = rest.length;
      if (i * _bs + len === size) {
        // Last block: the source must be exhausted (refuse before the snapshot is completed).
        let extra = pendingBytes;
        while (extra === 0 && !ended) {
          const r = await it.next();
          if (r.done) ended = true; else extra += r.value.length;
        }
        if (extra > 0) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `source has more than the ${size} bytes announced`);
      }
      return block;
    }, t0);
  } finally {
    await it.return?.();
  }
}

/** The upload loop shared by uploadImage and uploadReadable: `read(i)` returns block i (short at the end). */
async function uploadBlocks(
  snaps: SnapshotStore, size: number, options: UploadImageOptions,
  read: (index: number, blockSize: number, length: number) => Promise<Buffer>, t0: number,
): Promise<UploadResult> {
  const session = await snaps.start({
    size,
    ...(options.volume !== undefined ? { volume: options.volume } : {}),
    ...(options.parent !== undefined ? { parent: options.parent } : {}),
    ...(options.blockSize !== undefined ? { blockSize: options.blockSize } : {}),
    ...(options.description !== undefined ? { description: options.description } : {}),
  });
  const bs = session.blockSize;
  const n = session.blockCount;
  const concurrency = options.concurrency ?? snaps.options.concurrency;
  const pool = new WorkPool(concurrency, concurrency);
  const agg = createHash('sha256');
  let changed = 0, zeros = 0, unchanged = 0, transferred = 0;
  const progress = (i: number): void => options.onProgress?.({ doneBytes: Math.min(size, i * bs), totalBytes: size, transferredBytes: transferred, changedBlocks: changed });
  // Blocks read and being hashed on the thread pool, oldest first (at most HASH_AHEAD):
  // hashing overlaps reading and uploading, and blocks are still decided in index
  // order, which the aggregate checksum needs.
  const ahead: Array<{ index: number; buf: Buffer; zero: boolean; digest: Promise<Buffer> | undefined }> = [];
  const decide = async (b: (typeof ahead)[number]): Promise<void> => {
    const { index, buf, zero } = b;
    const parentHash = session.parent ? await session.parentBlockHash(index) : null;
    if (zero) {
      zeros++;
      if (parentHash === null) { progress(index + 1); return; }
    }
    const digest = await (b.digest ?? sha256Async(buf));
    if (!zero && parentHash !== null && session.hashOf(buf, digest) === parentHash) {
      unchanged++;
      progress(index + 1);
      return;
    }
    agg.update(digest);
    changed++;
    await pool.push(async () => {
      await session.putBlockWithDigest(index, buf, digest);
      if (!zero) transferred += buf.length;
    });
    progress(index + 1);
  };
  try {
    for (let i = 0; i < n; i++) {
      if (options.signal?.aborted) throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'upload aborted');
      if (pool.hasFailed) break;
      const len = Math.min(bs, size - i * bs);
      const buf = await read(i, bs, len);
      const zero = isZero(buf);
      const digest = zero ? undefined : sha256Async(buf);
      digest?.catch(() => {}); // awaited by decide(); never an unhandled rejection meanwhile
      ahead.push({ index: i, buf, zero, digest });
      if (ahead.length >= HASH_AHEAD) await decide(ahead.shift()!);
    }
    while (ahead.length > 0 && !pool.hasFailed) await decide(ahead.shift()!);
    await pool.drain();
    const root = await session.complete(changed, agg.digest('base64'));
    progress(n);
    return {
      root, changedBlocks: changed, zeroBlocks: zeros, unchangedBlocks: unchanged,
      uploadedBytes: session.counters.uploadedBytes, storedBytes: session.counters.storedBytes, elapsedMs: Date.now() - t0,
    };
  } catch (err) {
    await pool.drain().catch(() => {});
    await session.abort().catch(() => {});
    throw err;
  }
}

export interface DownloadOptions {
  /** Write only blocks whose content differs from what the target holds. */
  incremental?: boolean;
  concurrency?: number;
  onProgress?: (p: TransferProgress) => void;
  signal?: AbortSignal;
}

export interface DownloadResult {
  root: SnapshotRoot;
  writtenBlocks: number;
  writtenBytes: number;
  fetchedBlocks: number;
  skippedBlocks: number;
  elapsedMs: number;
}

/** Restores snapshot `id` into `target` (regular file, created if missing, or block device). */
export async function downloadSnapshot(snaps: SnapshotStore, id: string, target: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const t0 = Date.now();
  const root = await snaps.getRoot(id);
  const family = await snaps.familyOf(root);
  const bs = root.blockSize;
  const n = blockCount(root.size, bs);
  let fh: FileHandle;
  try { fh = await open(target, 'r+'); } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw ioError(target, err);
    try { fh = await open(target, 'w+'); } catch (err2) { throw ioError(target, err2); }
  }
  try {
    const st = await fh.stat();
    const isDevice = st.isBlockDevice();
    if (!isDevice && !st.isFile()) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${target} is not a regular file or block device`);
    const targetSize = await deviceSize(target, st, fh);
    if (isDevice && targetSize < root.size) {
      throw new BlockgateError(ErrorCodes.NO_SPACE, `${target} holds ${targetSize} bytes; snapshot ${id} needs ${root.size}`);
    }
    const incremental = options.incremental ?? false;
    // Bytes of the target that may hold non-zero data (beyond: known zero).
    let existing = targetSize;
    if (!isDevice) {
      if (!incremental) { await fh.truncate(0); existing = 0; }
      await fh.truncate(root.size);
      existing = Math.min(existing, root.size);
    }
    const concurrency = options.concurrency ?? snaps.options.concurrency;
    const pool = new WorkPool(concurrency, concurrency);
    let written = 0, writtenBytes = 0, fetched = 0, skipped = 0, transferred = 0;
    const progress = (i: number): void => options.onProgress?.({ doneBytes: Math.min(root.size, i * bs), totalBytes: root.size, transferredBytes: transferred, changedBlocks: written });
    const zeroBuf = Buffer.alloc(bs);
    // Receive buffers, recycled once a block is written: a 512 KiB allocation
    // per block costs page faults and garbage collections (external memory).
    // At most `concurrency` tasks hold one, so the list stays that short.
    const spare: Buffer[] = [];
    try {
      for (let s = 0; s * root.shardBlocks < n && !pool.hasFailed; s++) {
        const ref = root.shards[s] ?? null;
        const entries = ref ? await snaps.readShard(ref.k, () => `snapshot ${id} shard ${s}`) : new Map<number, string>();
        const end = Math.min(n, (s + 1) * root.shardBlocks);
        for (let i = s * root.shardBlocks; i < end; i++) {
          if (options.signal?.aborted) throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, 'download aborted');
          if (pool.hasFailed) break;
          const hash = entries.get(i - s * root.shardBlocks) ?? null;
          const off = i * bs;
          const len = Math.min(bs, root.size - off);
          // What does the target hold here?
          let targetIsZero = off >= existing;
          let targetHash: string | null | undefined;
          if (!targetIsZero && (incremental || isDevice)) {
            if (incremental) {
              const cur = Buffer.allocUnsafe(len);
              const got = await readFully(fh, cur, off);
              if (got < len) cur.fill(0, got);
              targetIsZero = isZero(cur);
              if (!targetIsZero && hash !== null) {
                const full = len === bs ? cur : Buffer.concat([cur, Buffer.alloc(bs - len)]);
                targetHash = blockHashFromDigest(family.key, await sha256Async(full));
              }
            }
          }
          if (hash === null) {
            if (targetIsZero) { skipped++; progress(i + 1); continue; }
            // Target holds data where the snapshot has zeros: write zeros.
            await pool.push(async () => { await fh.write(zeroBuf, 0, len, off); written++; writtenBytes += len; });
            progress(i + 1);
            continue;
          }
          if (targetHash === hash) { skipped++; progress(i + 1); continue; }
          const index = i;
          await pool.push(async () => {
            const into = spare.pop() ?? Buffer.allocUnsafe(BLOCK_HEADER + bs);
            const plain = await snaps.readBlockObject(family, hash, () => `snapshot ${id} block ${index}`, options.signal, into);
            fetched++;
            transferred += len;
            await fh.write(plain, 0, len, off);
            written++;
            writtenBytes += len;
            spare.push(into); // not on failure: a failed write may still be reading it
          });
          progress(i + 1);
        }
      }
      await pool.drain();
    } catch (err) {
      await pool.drain().catch(() => {});
      throw err;
    }
    await fh.sync();
    progress(n);
    return { root, writtenBlocks: written, writtenBytes, fetchedBlocks: fetched, skippedBlocks: skipped, elapsedMs: Date.now() - t0 };
  } finally {
    await fh.close();
  }
}
