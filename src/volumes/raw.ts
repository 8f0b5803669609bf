// RawVolume: a BlockDevice on a local file or block device, no snapshots.
//
// States: open -> closing (new requests fail with SHUTTING_DOWN; in-flight
// ones finish) -> closed (fds closed). Invariants:
//   - size is fixed at open. A regular file is created sparse at `size` when
//     missing and extended (sparse) when shorter; a file LONGER than `size` is
//     refused (CONFIG): serving a prefix would silently hide data. A block
//     device may be served as a prefix (size <= device size).
//   - one read/write fd shared by every connection, so all connections see
//     one page cache (multiConn); flush = fdatasync(fd).
//   - FUA writes go through a second fd opened O_DSYNC (same inode, same page
//     cache; only that write is synced: see docs/performance.md for why not
//     write+fdatasync). FUA zero/trim are followed by fdatasync.
//   - reads/writes use the caller's Buffer directly (no copy). Requests of
//     up to nowaitMax (64 KiB) first try preadv2/pwritev2(RWF_NOWAIT) on the
//     event loop: a page-cache hit is served in one non-blocking system call
//     without the thread-pool round trip; a miss (EAGAIN) or the rest of a
//     short copy goes to the thread pool. Nothing ever waits for a disk on
//     the event loop.
//   - zero: files punch a hole when mayTrim, else FALLOC_FL_ZERO_RANGE, else
//     punch+allocate; block devices fallocate(PUNCH_HOLE) (zero with unmap,
//     never slow) when mayTrim, else BLKZEROOUT. When no fast primitive
//     works: fast=true fails with NOT_SUPPORTED, otherwise zeros are written.
//     A primitive that fails with EOPNOTSUPP is not tried again.
//   - trim is advisory: punch hole (files) / BLKDISCARD (devices); when the
//     platform cannot, it succeeds without effect.
//   - extents (files only): SEEK_DATA/SEEK_HOLE; a hole is hole+zero, data is
//     neither (we do not claim data reads as zero).

import * as fs from 'node:fs';
import { constants as fsConstants } from 'node:fs';
import { readFile } from 'node:fs/promises';

import type {
  BlockDevice,
  BlockDeviceCapabilities,
  Extent,
  WriteFlags,
  ZeroFlags,
} from '../block-device/block-device.js';
import { BlockgateError, ErrorCodes, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import * as native from '../native/index.js';
import { tuning } from '../config/tuning.js';
import { parseSize } from '../util/size.js';

export const RAW_MIN_BLOCK_SIZE = 1;
export const RAW_PREFERRED_BLOCK_SIZE = 4096;
export const RAW_MAX_BLOCK_SIZE = 32 * 1024 * 1024;

/** Fast primitives a test may declare unsupported, to exercise fallbacks. */
export type RawPrimitive = 'punchHole' | 'zeroRange' | 'allocate' | 'blkZeroOut' | 'blkDiscard' | 'seek' | 'nowaitRead' | 'nowaitWrite';

export interface RawVolumeOptions {
  /** File or block device path. */
  path: string;
  /** Bytes (or a size string such as "10GiB"). Required to create a file; defaults to the existing size. */
  size?: number | string;
  readOnly?: boolean;
  logger?: Logger;
  /** How FUA writes are made durable (default 'dsync-fd'; 'fdatasync' = write then fdatasync). */
  fuaMode?: 'dsync-fd' | 'fdatasync';
  /**
   * Requests up to this many bytes first try a non-blocking copy from/to the
   * page cache on the event loop (preadv2/pwritev2 RWF_NOWAIT), skipping the
   * thread-pool round trip on a cache hit; 0 disables. Default: the daemon
   * config's tuning.nowaitMax (64 KiB unless set).
   */
  nowaitMax?: number;
  /** Testing: treat these primitives as unsupported (EOPNOTSUPP) from the start. */
  unsupported?: readonly RawPrimitive[];
}

const ZERO_CHUNK = 1024 * 1024;
let zeroChunk: Buffer | undefined;
function zeros(): Buffer {
  return (zeroChunk ??= Buffer.alloc(ZERO_CHUNK));
}

function ioCodeOf(err: unknown): ErrorCode {
  switch ((err as { code?: unknown } | null)?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return ErrorCodes.NO_SPACE;
    case 'EROFS':
      return ErrorCodes.READ_ONLY;
    default:
      return ErrorCodes.IO;
  }
}

function sysError(err: unknown, op: string, path: string, offset?: number, length?: number): BlockgateError {
  const code = (err as { code?: unknown } | null)?.code;
  const where = offset === undefined ? '' : ` at ${offset}+${length ?? 0}`;
  return new BlockgateError(ioCodeOf(err), `raw volume ${path}: ${op}${where} failed: ${(err as Error)?.message ?? String(err)}`, {
    cause: err,
    details: { path, op, offset, length, errno: typeof code === 'string' ? code : undefined },
  });
}

function configError(message: string, cause?: unknown): BlockgateError {
  return new BlockgateError(ErrorCodes.CONFIG, message, cause === undefined ? {} : { cause });
}

// ---- promise wrappers over the callback fs API (lower overhead than FileHandle) ----

function preadOnce(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.read(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function pwriteOnce(fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> {
  return new Promise((resolve, reject) => {
    fs.write(fd, buf, off, len, pos, (err, n) => (err ? reject(err) : resolve(n)));
  });
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve())));
}

function closeFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
}

function openFd(path: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(path, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function fstat(fd: number): Promise<fs.BigIntStats> {
  return new Promise((resolve, reject) => fs.fstat(fd, { bigint: true }, (err, st) => (err ? reject(err) : resolve(st))));
}

function ftruncate(fd: number, len: number): Promise<void> {
  return new Promise((resolve, reject) => fs.ftruncate(fd, len, (err) => (err ? reject(err) : resolve())));
}

/** Linux dev_t (glibc encoding) -> "major:minor". */
function devName(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Reads a queue attribute of the block device `dev` (or of its parent disk for a partition). */
async function queueAttr(dev: bigint, attr: string): Promise<string | undefined> {
  if (dev === 0n) return undefined;
  const base = `/sys/dev/block/${devName(dev)}`;
  for (const p of [`${base}/queue/${attr}`, `${base}/../queue/${attr}`]) {
    try {
      return (await readFile(p, 'utf8')).trim();
    } catch {
      // try the next one
    }
  }
  return undefined;
}

export class RawVolume implements BlockDevice {
  private readonly caps: BlockDeviceCapabilities;
  private readonly unsupported = new Set<RawPrimitive>();
  private inflight = 0;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private drained: (() => void) | undefined;
  private closePromise: Promise<void> | undefined;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    /** O_DSYNC fd for FUA writes, or -1 (read-only, or fuaMode 'fdatasync'). */
    private readonly dsyncFd: number,
    private readonly isBlockDevice: boolean,
    size: number,
    readOnly: boolean,
    rotational: boolean,
    private readonly hasNative: boolean,
    /** Block device whose queue advertises hardware WRITE ZEROES (BLKZEROOUT is fast). */
    private readonly hwWriteZeroes: boolean,
    private readonly log: Logger,
    unsupported: readonly RawPrimitive[],
    private readonly nowaitMax: number,
  ) {
    for (const p of unsupported) this.unsupported.add(p);
    if (!hasNative) {
      this.unsupported.add('nowaitRead');
      this.unsupported.add('nowaitWrite');
    }
    const writable = !readOnly;
    this.caps = Object.freeze({
      size,
      readOnly,
      minBlockSize: RAW_MIN_BLOCK_SIZE,
      preferredBlockSize: RAW_PREFERRED_BLOCK_SIZE,
      maxBlockSize: RAW_MAX_BLOCK_SIZE,
      flush: true,
      fua: writable ? 'native' : 'none',
      trim: writable && hasNative,
      zero: writable ? (hasNative ? 'native' : 'emulate') : 'none',
      fastZero:
        writable &&
        hasNative &&
        (isBlockDevice
          ? hwWriteZeroes || !this.unsupported.has('punchHole')
          : !this.unsupported.has('punchHole') || !this.unsupported.has('zeroRange')),
      cache: hasNative ? 'native' : 'emulate',
      extents: hasNative && !isBlockDevice && !this.unsupported.has('seek'),
      multiConn: true,
      rotational,
      keepsWriteBuffers: false, // reads and writes use the caller's buffer only until they settle
    } satisfies BlockDeviceCapabilities);
  }

  /** Opens (creating or extending a regular file as needed) the volume at `path`. */
  static async open(options: RawVolumeOptions): Promise<RawVolume> {
    const { path } = options;
    const readOnly = options.readOnly ?? false;
    const log = (options.logger ?? silentLogger).child({ component: 'raw-volume', path });
    if (typeof path !== 'string' || path === '') throw configError('raw volume: `disk` (path) is required');
    let wanted: number | undefined;
    if (options.size !== undefined) {
      wanted = parseSize(options.size);
      if (wanted === undefined || wanted < 1) throw configError(`raw volume ${path}: invalid size ${JSON.stringify(options.size)}`);
    }

    let st: fs.Stats | undefined;
    try {
      st = await fs.promises.stat(path);
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT') throw configError(`raw volume ${path}: cannot stat: ${(err as Error).message}`, err);
    }
    if (st && !st.isFile() && !st.isBlockDevice()) {
      throw configError(`raw volume ${path}: not a regular file or block device`);
    }
    const isBlockDevice = st?.isBlockDevice() ?? false;
    if (!st) {
      if (readOnly) throw configError(`raw volume ${path}: file does not exist (and the volume is read-only)`);
      if (wanted === undefined) throw configError(`raw volume ${path}: file does not exist and no size is configured`);
    }

    // Block devices are opened O_EXCL: fails with EBUSY if mounted or in use
    // by another exclusive opener (e.g. a device-mapper target).
    const mode = readOnly ? fsConstants.O_RDONLY : fsConstants.O_RDWR;
    const flags = mode | (st ? 0 : fsConstants.O_CREAT) | (isBlockDevice ? fsConstants.O_EXCL : 0);
    let fd: number;
    try {
      fd = await openFd(path, flags);
    } catch (err) {
      const hint = (err as { code?: string }).code === 'EBUSY' ? ' (device in use: mounted or held by another program?)' : '';
      throw configError(`raw volume ${path}: cannot open${hint}: ${(err as Error).message}`, err);
    }

    let dsyncFd = -1;
    try {
      const hasNative = native.nativeAvailable();
      if (!hasNative) log.warn('native addon not available: zero/trim emulated, no extents (run `npm run build`)');
      const fst = await fstat(fd);
      let size: number;
      if (isBlockDevice) {
        if (!hasNative) throw configError(`raw volume ${path}: block devices need the native addon (run \`npm run build\`)`);
        const devSize = await native.blockDeviceSize(fd);
        if (wanted !== undefined && wanted > devSize) {
          throw configError(`raw volume ${path}: configured size ${wanted} exceeds the block device size ${devSize}`);
        }
        size = wanted ?? devSize;
      } else {
        const fileSize = Number(fst.size);
        if (wanted === undefined) {
          if (fileSize < 1) throw configError(`raw volume ${path}: file is empty and no size is configured`);
          size = fileSize;
        } else if (fileSize > wanted) {
          throw configError(
            `raw volume ${path}: file is ${fileSize} bytes, larger than the configured size ${wanted}; ` +
              'refusing to hide data (set size to the file size, or shrink the file yourself)',
          );
        } else {
          if (fileSize < wanted) {
            if (readOnly) throw configError(`raw volume ${path}: file is ${fileSize} bytes, smaller than the configured size ${wanted}, and the volume is read-only`);
            await ftruncate(fd, wanted); // sparse extension
            if (fileSize > 0) log.info('extended file to the configured size', { from: fileSize, to: wanted });
          }
          size = wanted;
        }
      }
      if (!Number.isSafeInteger(size)) throw configError(`raw volume ${path}: size ${size} too large`);

      const fuaMode = options.fuaMode ?? 'dsync-fd';
      if (!readOnly && fuaMode === 'dsync-fd') {
        dsyncFd = await openFd(path, fsConstants.O_RDWR | fsConstants.O_DSYNC);
      }

      const dev = isBlockDevice ? fst.rdev : fst.dev;
      const rotational = (await queueAttr(dev, 'rotational')) === '1';
      const hwWriteZeroes = isBlockDevice && Number((await queueAttr(fst.rdev, 'write_zeroes_max_bytes')) ?? '0') > 0;
      const volume = new RawVolume(
        path, fd, dsyncFd, isBlockDevice, size, readOnly, rotational, hasNative, hwWriteZeroes, log, options.unsupported ?? [],
        options.nowaitMax ?? tuning().nowaitMax,
      );
      log.debug('opened', { size, blockDevice: isBlockDevice, readOnly, fuaMode, rotational });
      return volume;
    } catch (err) {
      await closeFd(fd).catch(() => undefined);
      if (dsyncFd >= 0) await closeFd(dsyncFd).catch(() => undefined);
      if (err instanceof BlockgateError) throw err;
      throw configError(`raw volume ${path}: ${(err as Error).message}`, err);
    }
  }

  capabilities(): BlockDeviceCapabilities {
    return this.caps;
  }

  // ---- request accounting (close waits for in-flight requests) ----

  private enter(): void {
    if (this.state !== 'open') {
      throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `raw volume ${this.path} is closed`);
    }
    this.inflight++;
  }

  private leave(): void {
    if (--this.inflight === 0 && this.drained) this.drained();
  }

  async read(target: Buffer, offset: number): Promise<void> {
    this.enter();
    try {
      let done = 0;
      const len = target.length;
      if (len <= this.nowaitMax && !this.unsupported.has('nowaitRead')) done = this.tryNoWait('nowaitRead', target, 0, len, offset);
      while (done < len) {
        let n: number;
        try {
          n = await preadOnce(this.fd, target, done, len - done, offset + done);
        } catch (err) {
          throw sysError(err, 'read', this.path, offset, len);
        }
        if (n === 0) {
          throw new BlockgateError(ErrorCodes.IO, `raw volume ${this.path}: unexpected end of file at ${offset + done} (file truncated underneath?)`, {
            details: { path: this.path, op: 'read', offset, length: len },
          });
        }
        done += n;
      }
    } finally {
      this.leave();
    }
  }

  async write(data: Buffer, offset: number, flags: WriteFlags): Promise<void> {
    this.enter();
    try {
      const fd = flags.fua && this.dsyncFd >= 0 ? this.dsyncFd : this.fd;
      let done = 0;
      if (fd === this.fd && data.length <= this.nowaitMax && !this.unsupported.has('nowaitWrite')) {
        done = this.tryNoWait('nowaitWrite', data, 0, data.length, offset);
      }
      if (done < data.length) await this.writeAll(fd, data, done, data.length - done, offset + done);
      if (flags.fua && this.dsyncFd < 0) await this.sync('write(fua)');
    } finally {
      this.leave();
    }
  }

  async zero(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    this.enter();
    try {
      const done = this.isBlockDevice ? await this.zeroDevice(offset, length, flags) : await this.zeroFile(offset, length, flags);
      if (!done) {
        if (flags.fast) {
          throw new BlockgateError(ErrorCodes.NOT_SUPPORTED, `raw volume ${this.path}: no fast zero on this ${this.isBlockDevice ? 'device' : 'file system'}`);
        }
        await this.writeZeros(offset, length);
      }
      if (flags.fua) await this.sync('zero(fua)');
    } finally {
      this.leave();
    }
  }

  async trim(offset: number, length: number, flags: WriteFlags): Promise<void> {
    this.enter();
    try {
      if (this.isBlockDevice) {
        // BLKDISCARD wants 512-byte alignment; trim is advisory, so shrink to it.
        const start = Math.ceil(offset / 512) * 512;
        const end = Math.floor((offset + length) / 512) * 512;
        if (end > start) await this.tryPrimitive('blkDiscard', () => native.blkDiscard(this.fd, start, end - start), offset, length);
      } else {
        await this.tryPrimitive('punchHole', () => native.punchHole(this.fd, offset, length), offset, length);
      }
      if (flags.fua) await this.sync('trim(fua)');
    } finally {
      this.leave();
    }
  }

  async flush(): Promise<void> {
    this.enter();
    try {
      await this.sync('flush');
    } finally {
      this.leave();
    }
  }

  async cache(offset: number, length: number): Promise<void> {
    this.enter();
    try {
      if (this.hasNative) {
        await native.fadvise(this.fd, offset, length, native.FADV.WILLNEED).catch((err: unknown) => {
          this.log.debug('fadvise(WILLNEED) failed; ignored (cache is advisory)', { err: err as Error });
        });
      } else {
        // Emulation fallback (the checker normally does this when cache is 'emulate').
        const buf = Buffer.allocUnsafe(Math.min(length, ZERO_CHUNK));
        for (let pos = offset; pos < offset + length; pos += buf.length) {
          const n = Math.min(buf.length, offset + length - pos);
          await preadOnce(this.fd, buf, 0, n, pos).catch((err: unknown) => {
            throw sysError(err, 'cache', this.path, offset, length);
          });
        }
      }
    } finally {
      this.leave();
    }
  }

  async extents(offset: number, length: number): Promise<Extent[]> {
    this.enter();
    try {
      const size = this.caps.size;
      const len = Math.min(length, size - offset);
      if (this.caps.extents && !this.unsupported.has('seek')) {
        try {
          const runs = await native.scanExtents(this.fd, offset, len, 1024);
          if (runs.length > 0) return runs.map((r) => ({ length: r.length, hole: !r.data, zero: !r.data }));
        } catch (err) {
          if (!native.hasErrorCode(err, ...native.UNSUPPORTED_CODES, 'EINVAL')) throw sysError(err, 'extents', this.path, offset, length);
          this.markUnsupported('seek', err);
        }
      }
      return [{ length: len, hole: false, zero: false }];
    } finally {
      this.leave();
    }
  }

  /** Waits for in-flight requests, then closes the fds. Idempotent. */
  close(): Promise<void> {
    this.closePromise ??= (async () => {
      this.state = 'closing';
      if (this.inflight > 0) await new Promise<void>((resolve) => (this.drained = resolve));
      this.state = 'closed';
      const errors: unknown[] = [];
      for (const fd of [this.dsyncFd, this.fd]) {
        if (fd >= 0) await closeFd(fd).catch((err: unknown) => errors.push(err));
      }
      if (errors.length) throw sysError(errors[0], 'close', this.path);
      this.log.debug('closed');
    })();
    return this.closePromise;
  }

  // ---- internals ----

  private async writeAll(fd: number, buf: Buffer, bufOff: number, len: number, pos: number): Promise<void> {
    let done = 0;
    while (done < len) {
      let n: number;
      try {
        n = await pwriteOnce(fd, buf, bufOff + done, len - done, pos + done);
      } catch (err) {
        throw sysError(err, 'write', this.path, pos, len);
      }
      if (n === 0) throw new BlockgateError(ErrorCodes.IO, `raw volume ${this.path}: write made no progress at ${pos + done}`);
      done += n;
    }
  }

  /**
   * Non-blocking copy on the event loop (RWF_NOWAIT). Returns the bytes done
   * (0 when the page cache could not serve it at once); the caller finishes
   * on the thread pool. Any error just disables the fast path or defers to
   * the thread-pool path, which reports errors properly.
   */
  private tryNoWait(p: 'nowaitRead' | 'nowaitWrite', buf: Buffer, bufOff: number, len: number, pos: number): number {
    try {
      const n = p === 'nowaitRead' ? native.preadNoWait(this.fd, buf, bufOff, len, pos) : native.pwriteNoWait(this.fd, buf, bufOff, len, pos);
      return n > 0 ? n : 0;
    } catch (err) {
      if (native.hasErrorCode(err, ...native.UNSUPPORTED_CODES, 'EINVAL')) this.markUnsupported(p, err);
      return 0;
    }
  }

  private async sync(op: string): Promise<void> {
    try {
      await fdatasync(this.fd);
    } catch (err) {
      throw sysError(err, op, this.path);
    }
  }

  private markUnsupported(p: RawPrimitive, err: unknown): void {
    if (!this.unsupported.has(p)) {
      this.unsupported.add(p);
      const level = p === 'nowaitRead' || p === 'nowaitWrite' ? 'debug' : 'info';
      this.log[level](`${p} not supported here; using the fallback from now on`, { err: err as Error });
    }
  }

  /**
   * Runs a fast primitive unless it is known unsupported. Returns true when it
   * did the job, false when it is unsupported (now or before); other errors
   * are thrown as BlockgateErrors.
   */
  private async tryPrimitive(p: RawPrimitive, fn: () => Promise<void>, offset: number, length: number): Promise<boolean> {
    if (!this.hasNative || this.unsupported.has(p)) return false;
    try {
      await fn();
      return true;
    } catch (err) {
      if (native.hasErrorCode(err, ...native.UNSUPPORTED_CODES)) {
        this.markUnsupported(p, err);
        return false;
      }
      throw sysError(err, p, this.path, offset, length);
    }
  }

  private async zeroFile(offset: number, length: number, flags: ZeroFlags): Promise<boolean> {
    const fd = this.fd;
    if (flags.mayTrim && (await this.tryPrimitive('punchHole', () => native.punchHole(fd, offset, length), offset, length))) return true;
    if (await this.tryPrimitive('zeroRange', () => native.zeroRange(fd, offset, length), offset, length)) return true;
    // No ZERO_RANGE (e.g. tmpfs, older NFS): punch, then re-allocate when the
    // client asked to keep the range allocated (nbdkit's file plugin does the same).
    if (!this.unsupported.has('punchHole') && (flags.mayTrim || !this.unsupported.has('allocate'))) {
      if (await this.tryPrimitive('punchHole', () => native.punchHole(fd, offset, length), offset, length)) {
        if (!flags.mayTrim) await this.tryPrimitive('allocate', () => native.allocate(fd, offset, length), offset, length);
        return true;
      }
    }
    return false;
  }

  private async zeroDevice(offset: number, length: number, flags: ZeroFlags): Promise<boolean> {
    const fd = this.fd;
    // The kernel's BLKZEROOUT / fallocate on a block device need 512-byte
    // alignment: zero an unaligned head and tail by writing.
    const start = Math.ceil(offset / 512) * 512;
    const end = Math.max(start, Math.floor((offset + length) / 512) * 512);
    if (end === start) {
      if (flags.fast) return false;
      await this.writeZeros(offset, length);
      return true;
    }
    let done = false;
    // fallocate(PUNCH_HOLE) on a block device = WRITE ZEROES allowing unmap, no slow fallback.
    if (flags.mayTrim) done = await this.tryPrimitive('punchHole', () => native.punchHole(fd, start, end - start), offset, length);
    if (!done && (this.hwWriteZeroes || !flags.fast)) {
      // BLKZEROOUT falls back to writing zeros in the kernel: fast only with hardware WRITE ZEROES.
      done = await this.tryPrimitive('blkZeroOut', () => native.blkZeroOut(fd, start, end - start), offset, length);
    }
    if (!done) return false;
    if (start > offset) await this.writeZeros(offset, start - offset);
    if (offset + length > end) await this.writeZeros(end, offset + length - end);
    return true;
  }

  private async writeZeros(offset: number, length: number): Promise<void> {
    const z = zeros();
    for (let pos = offset; pos < offset + length; ) {
      const n = Math.min(z.length, offset + length - pos);
      await this.writeAll(this.fd, z, 0, n, pos);
      pos += n;
    }
  }
}
