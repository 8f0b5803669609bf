// StoredVolume: a BlockDevice whose primary copy is a local disk (RawVolume)
// and whose every change is journaled in a WriteLog, from which the uploader
// shadows it into the object store as snapshot roots.
//
// States: open -> closing (new requests fail SHUTTING_DOWN; in-flight ones
// finish) -> closed. Per write: entry (waits while a snapshot barrier is
// closed, and for in-flight writes overlapping its range) -> lazy fetch of
// unrestored blocks -> log append (page cache) -> disk write -> done.
//
// Invariants:
//   - log before disk, and overlapping writes are serialized: the disk never
//     holds a write the log does not (a SIGKILL cannot tear a record whose
//     disk write started), and disk and log agree on the order of
//     overlapping writes;
//   - FLUSH/FUA = log.sync() (group commit: one fdatasync for every caller
//     waiting). Acknowledged+flushed writes are durable in the log; the disk
//     is made durable (fdatasync) before the log is released past them, so
//     every write is always durable in the disk or in the unreleased log,
//     and open() re-applies the unreleased log to the disk (redo);
//   - the store holds the volume as of state.root (= as of the log's
//     releasedSeq); content as of an unreleased marker M = that root
//     overlaid with the log as of M (blockAsOf), read from the disk instead
//     when the block was not rewritten after M (checked before and after the
//     read: no newer log piece, no overlapping write in flight);
//   - lazily restored volumes: an unrestored block is fetched from the
//     current root overlaid with the log (now) before any read or write
//     touches it; root switches (commitRoot) wait for running fetches.
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { BlockDevice, BlockDeviceCapabilities, WriteFlags, ZeroFlags } from '../../block-device/block-device.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import { RestoreBitmap } from '../../restore/bitmap.js';
import { LazyRestore, type LazyRestoreProgress } from '../../restore/lazy.js';
import { SnapshotStore, uploadImage, type SnapshotRoot } from '../../snapshots/index.js';
import { blockCount } from '../../snapshots/format.js';
import { RawVolume } from '../raw.js';
import { UploadLag } from '../../uploader/upload-lag.js';
import { WriteLog } from '../../write-log/write-log.js';
import { readState, writeState, type StoredRootRef, type StoredVolumeState } from './state.js';

export interface StoredVolumeOptions {
  name: string;
  /** Local disk: file or block device. */
  disk: string;
  size?: number;
  /** Directory holding the write log (log/), the state file and the restore bitmap. */
  logDir: string;
  logCapacityBytes: number;
  blockSize: number;
  snaps: SnapshotStore;
  /** Re-create the volume from this snapshot (lazy restore) when it has no local state yet. */
  restoreFrom?: string;
  logger?: Logger;
  /** Lazy restore background concurrency. */
  restoreConcurrency?: number;
}

interface InflightWrite {
  readonly start: number;
  readonly end: number;
  readonly done: Promise<void>;
}

export interface StoredVolumeDetails {
  log: { usedBytes: number; capacityBytes: number; records: number; markers: number; waitingWriters: number; backpressureWaits: number };
  root: StoredRootRef | null;
  restore: LazyRestoreProgress | null;
}

const BITMAP_FILE = 'restore.bitmap';

export class StoredVolume implements BlockDevice {
  private readonly caps: BlockDeviceCapabilities;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private inflightWrites: InflightWrite[] = [];
  private requests = 0;
  private drained: (() => void) | undefined;
  private gate: Promise<void> | undefined;
  private openGate: (() => void) | undefined;
  private pauses = 0;
  private fetchGate: Promise<void> | undefined;
  private fetching = 0;
  private fetchDrained: (() => void) | undefined;
  private lazy: LazyRestore | undefined;
  private diskKnownZero = false;
  /** (seq, ms) samples of appended records, to tell the age of the oldest unreleased write. */
  private readonly lag = new UploadLag();
  private listeners: Array<() => void> = [];
  readonly blocks: number;

  private constructor(
    readonly name: string,
    readonly disk: RawVolume,
    readonly log: WriteLog,
    readonly snaps: SnapshotStore,
    private vstate: StoredVolumeState,
    readonly dir: string,
    private readonly logger: Logger,
  ) {
    const d = disk.capabilities();
    this.blocks = blockCount(d.size, vstate.blockSize);
    this.caps = Object.freeze({
      size: d.size, readOnly: false, minBlockSize: 1, preferredBlockSize: 4096, maxBlockSize: 32 * 1024 * 1024,
      flush: true, fua: 'native', trim: true, zero: 'native', fastZero: false, cache: 'none', extents: false,
      multiConn: true, rotational: d.rotational,
    } satisfies BlockDeviceCapabilities);
  }

  get blockSize(): number { return this.vstate.blockSize; }
  get size(): number { return this.caps.size; }
  get root(): StoredRootRef | null { return this.vstate.root; }
  get restoring(): boolean { return this.lazy !== undefined && !this.lazy.complete; }

  /**
   * Opens the disk and the log, re-applies the unreleased log to the disk
   * (redo), and establishes the baseline root: the persisted one; else a lazy
   * restore from `restoreFrom`; else (new volume) an empty baseline, or a
   * full upload of a disk that already holds data (bootstrap, before serving).
   */
  static async open(o: StoredVolumeOptions): Promise<StoredVolume> {
    const logger = (o.logger ?? silentLogger).child({ component: 'stored-volume', volume: o.name });
    mkdirSync(o.logDir, { recursive: true });
    let st = readState(o.logDir);
    if (st && st.volume !== o.name) throw new BlockgateError(ErrorCodes.CONFIG, `${o.logDir} holds the state of volume ${st.volume}, not ${o.name}`);
    if (st && st.blockSize !== o.blockSize) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name} was created with block size ${st.blockSize}; the configuration says ${o.blockSize}`);

    let restoreRoot: SnapshotRoot | undefined;
    if (!st && o.restoreFrom) {
      restoreRoot = await o.snaps.getRoot(o.restoreFrom);
      if (restoreRoot.volume !== o.name) {
        throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: snapshot ${o.restoreFrom} belongs to volume ${restoreRoot.volume}; a stored volume is restored under the name of the snapshot's volume (it resumes that lineage)`);
      }
      if (restoreRoot.blockSize !== o.blockSize) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: snapshot ${o.restoreFrom} has block size ${restoreRoot.blockSize}, configuration says ${o.blockSize}`);
      if (o.size !== undefined && o.size !== restoreRoot.size) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: configured size ${o.size} differs from snapshot ${o.restoreFrom}'s size ${restoreRoot.size}`);
    }
    const size = o.size ?? restoreRoot?.size ?? st?.size;
    const diskExisted = existsSync(o.disk);
    if (!diskExisted && size !== undefined) mkdirSync(join(o.disk, '..'), { recursive: true });
    const disk = await RawVolume.open({ path: o.disk, ...(size !== undefined ? { size } : {}), logger, fuaMode: 'fdatasync' });
    let log: WriteLog | undefined;
    try {
      if (st && st.size !== disk.capabilities().size) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name} has size ${st.size}; the disk is ${disk.capabilities().size} bytes (resizing is not supported)`);
      log = await WriteLog.open(join(o.logDir, 'log'), { capacityBytes: o.logCapacityBytes, volumeId: o.name, logger });
      const volSize = disk.capabilities().size;
      let lazyFresh = false;
      if (!st) {
        let root: StoredRootRef | null = null;
        if (restoreRoot) {
          // Lazy restore: a regular file starts as all holes (zeros), so zero blocks need no I/O.
          if (!disk.capabilities().extents) logger.info('lazy restore onto a block device: zero blocks are written as zeros');
          root = { id: restoreRoot.id, markerSeq: 0, createdAt: restoreRoot.createdAt };
          lazyFresh = true;
        } else if (await diskHoldsData(disk)) {
          const latest = (await o.snaps.list(o.name)).at(-1);
          logger.info('new stored volume on a disk that holds data: uploading it as the baseline before serving', { disk: o.disk, parent: latest?.id ?? null });
          const up = await uploadImage(o.snaps, o.disk, { volume: o.name, blockSize: o.blockSize, ...(latest && latest.blockSize === o.blockSize && latest.size === volSize ? { parent: latest.id } : {}), description: JSON.stringify({ blockgate: 'baseline' }) });
          root = { id: up.root.id, markerSeq: 0, createdAt: up.root.createdAt };
        }
        st = {
          format: 'blockgate-stored-volume', version: 1, volume: o.name, size: volSize, blockSize: o.blockSize, root,
          restore: restoreRoot ? { snapshot: restoreRoot.id, startedAt: new Date().toISOString(), totalBlocks: blockCount(volSize, o.blockSize) } : null,
        };
        if (lazyFresh && disk.capabilities().extents) {
          // Start from holes: whatever the file held is not the snapshot.
          await disk.zero(0, volSize, { fua: false, mayTrim: true, fast: false });
        }
        writeState(o.logDir, st);
      }
      const vol = new StoredVolume(o.name, disk, log, o.snaps, st, o.logDir, logger);
      await vol.recover();
      if (st.restore) await vol.startLazy(lazyFresh, o.restoreConcurrency ?? 8);
      return vol;
    } catch (err) {
      await log?.close().catch(() => undefined);
      await disk.close().catch(() => undefined);
      throw err;
    }
  }

  /** Redo: re-applies every unreleased record to the disk, then makes the disk durable. */
  private async recover(): Promise<void> {
    const root = this.vstate.root;
    // A root durable for seq > releasedSeq (crash between root commit and release): release now.
    if (root && root.markerSeq > this.log.releasedSeq && root.markerSeq <= this.log.newestSeq) {
      await this.log.release(root.markerSeq);
    }
    let n = 0, bytes = 0;
    for await (const rec of this.log.pendingRecords(undefined, { withData: true })) {
      if (rec.type === 'write') {
        await this.disk.write(rec.data!, rec.offset, { fua: false });
        bytes += rec.length;
      } else if (rec.type === 'zero' || rec.type === 'trim') {
        await this.disk.zero(rec.offset, rec.length, { fua: false, mayTrim: rec.type === 'trim', fast: false });
      } else {
        continue;
      }
      n++;
    }
    if (n > 0) {
      await this.disk.flush();
      this.logger.info('write log re-applied to the disk', { records: n, bytes, releasedSeq: this.log.releasedSeq, newestSeq: this.log.newestSeq });
    }
    if (this.log.newestSeq > this.log.releasedSeq) this.lag.appended(this.log.releasedSeq + 1);
  }

  private async startLazy(fresh: boolean, concurrency: number): Promise<void> {
    const path = join(this.dir, BITMAP_FILE);
    const bitmap = (fresh ? undefined : RestoreBitmap.load(path, this.blocks)) ?? new RestoreBitmap(this.blocks);
    this.diskKnownZero = fresh && this.disk.capabilities().extents;
    this.lazy = new LazyRestore({
      bitmap, bitmapPath: path, blockSize: this.blockSize, logger: this.logger, concurrency,
      fetch: (i) => this.fetchBlock(i),
      syncDisk: () => this.disk.flush(),
      onComplete: async () => {
        this.vstate = { ...this.vstate, restore: null };
        writeState(this.dir, this.vstate);
        rmSync(path, { force: true });
      },
    });
    this.logger.info('lazy restore: serving while blocks fill in', { snapshot: this.vstate.restore?.snapshot, restored: bitmap.restored, blocks: this.blocks });
    this.lazy.start();
  }

  /** Lazy restore: block i = current root overlaid with the log (now), written to the disk. */
  private async fetchBlock(i: number): Promise<void> {
    while (this.fetchGate) await this.fetchGate;
    this.fetching++;
    try {
      const bs = this.blockSize;
      const off = i * bs;
      const len = Math.min(bs, this.size - off);
      const rootRef = this.vstate.root;
      let data: Buffer | undefined;
      if (rootRef) {
        const root = await this.snaps.getRoot(rootRef.id);
        const hash = await this.snaps.blockHashAt(root, i);
        if (hash !== null) {
          const plain = await this.snaps.readBlockObject(await this.snaps.familyOf(root), hash, () => `snapshot ${root.id} block ${i}`);
          data = Buffer.from(plain.subarray(0, len));
        }
      }
      const pieces = this.log.lookup(off, len);
      if (!data && pieces.length === 0 && this.diskKnownZero) return;
      data ??= Buffer.alloc(len);
      if (pieces.length > 0) await this.log.readDirty(off, len, data);
      await this.disk.write(data, off, { fua: false });
    } finally {
      if (--this.fetching === 0 && this.fetchDrained) this.fetchDrained();
    }
  }

  capabilities(): BlockDeviceCapabilities {
    return this.caps;
  }

  // ------------------------------------------------------------ data path

  private enterRequest(): void {
    if (this.state !== 'open') throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `stored volume ${this.name} is closed`);
    this.requests++;
  }

  private leaveRequest(): void {
    if (--this.requests === 0 && this.drained) this.drained();
  }

  private async ensureRestored(offset: number, length: number): Promise<void> {
    if (!this.lazy || this.lazy.complete) return;
    const bs = this.blockSize;
    await this.lazy.ensure(Math.floor(offset / bs), Math.floor((offset + length - 1) / bs));
  }

  async read(target: Buffer, offset: number): Promise<void> {
    this.enterRequest();
    try {
      await this.ensureRestored(offset, target.length);
      await this.disk.read(target, offset);
    } finally {
      this.leaveRequest();
    }
  }

  /** Runs a mutation of [offset, offset+length): barrier, overlap serialization, lazy fetch, then fn. */
  private async mutate(offset: number, length: number, fn: () => Promise<void>): Promise<void> {
    this.enterRequest();
    try {
      while (this.gate) await this.gate;
      const end = offset + length;
      for (;;) {
        const clash = this.inflightWrites.find((w) => w.start < end && offset < w.end);
        if (!clash) break;
        await clash.done.catch(() => undefined);
      }
      let finish!: () => void;
      const entry: InflightWrite = { start: offset, end, done: new Promise<void>((r) => (finish = r)) };
      this.inflightWrites.push(entry);
      try {
        await this.ensureRestored(offset, length);
        await fn();
      } finally {
        this.inflightWrites.splice(this.inflightWrites.indexOf(entry), 1);
        finish();
      }
    } finally {
      this.leaveRequest();
    }
  }

  private noteAppended(seq: number): void {
    this.lag.appended(seq);
    for (const l of this.listeners) l();
  }

  async write(data: Buffer, offset: number, flags: WriteFlags): Promise<void> {
    await this.mutate(offset, data.length, async () => {
      this.noteAppended(await this.log.append(offset, data));
      await this.disk.write(data, offset, { fua: false });
    });
    if (flags.fua) await this.log.sync();
  }

  async zero(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    await this.mutate(offset, length, async () => {
      this.noteAppended(await this.log.appendZero(offset, length, { trim: flags.mayTrim }));
      await this.disk.zero(offset, length, { fua: false, mayTrim: flags.mayTrim, fast: false });
    });
    if (flags.fua) await this.log.sync();
  }

  async trim(offset: number, length: number, flags: WriteFlags): Promise<void> {
    // The log records a TRIM as "reads as zeros"; the disk must agree, so trim = zero allowing deallocation.
    await this.zero(offset, length, { fua: flags.fua, mayTrim: true, fast: false });
  }

  /** Every write completed before this call is durable (in the log; redo restores the disk). */
  async flush(): Promise<void> {
    this.enterRequest();
    try {
      await this.log.sync();
    } finally {
      this.leaveRequest();
    }
  }

  // ------------------------------------------------------------ snapshots (uploader / coordinator side)

  /** Holds new writes at the door until the returned function is called (in-flight writes continue). */
  pauseWrites(): () => void {
    if (this.pauses++ === 0) this.gate = new Promise<void>((r) => (this.openGate = r));
    let done = false;
    return () => {
      if (done) return;
      done = true;
      if (--this.pauses === 0) {
        this.gate = undefined;
        this.openGate?.();
      }
    };
  }

  /** Appends a snapshot marker; the snapshot is the volume as of it. */
  async appendMarker(payload: Record<string, unknown>): Promise<number> {
    const seq = await this.log.appendMarker({ ...payload, at: new Date().toISOString() });
    for (const l of this.listeners) l();
    return seq;
  }

  /** Called on each append/marker (the uploader wakes up). */
  onActivity(listener: () => void): void {
    this.listeners.push(listener);
  }

  /**
   * Block `index` as of marker `markerSeq`: from the disk when it was not
   * rewritten after the marker, else `parent` root's block overlaid with the
   * log as of the marker. The last block is short.
   */
  async blockAsOf(index: number, markerSeq: number, parent: SnapshotRoot | null, covered: boolean): Promise<Buffer> {
    const bs = this.blockSize;
    const off = index * bs;
    const len = Math.min(bs, this.size - off);
    const buf = Buffer.alloc(len);
    if (!covered && this.diskCurrentFor(off, len, markerSeq)) {
      await this.disk.read(buf, off);
      if (this.diskCurrentFor(off, len, markerSeq)) return buf;
    }
    if (!covered && parent) {
      const hash = await this.snaps.blockHashAt(parent, index);
      if (hash !== null) {
        const plain = await this.snaps.readBlockObject(await this.snaps.familyOf(parent), hash, () => `snapshot ${parent.id} block ${index}`);
        plain.copy(buf, 0, 0, len);
      } else {
        buf.fill(0);
      }
    } else {
      buf.fill(0);
    }
    await this.log.readDirty(off, len, buf, { asOf: markerSeq });
    return buf;
  }

  /** The disk holds [off, off+len) as of the marker: restored, no newer record, no write in flight. */
  private diskCurrentFor(off: number, len: number, markerSeq: number): boolean {
    if (this.lazy && !this.lazy.complete) {
      const bs = this.blockSize;
      for (let i = Math.floor(off / bs); i <= Math.floor((off + len - 1) / bs); i++) if (!this.lazy.isRestored(i)) return false;
    }
    const end = off + len;
    if (this.inflightWrites.some((w) => w.start < end && off < w.end)) return false;
    return !this.log.lookup(off, len).some((p) => p.seq > markerSeq);
  }

  /**
   * The store now durably holds the volume as of `ref.markerSeq` (root
   * ref.id): make the disk durable, persist the new baseline, then release
   * the log up to the marker. Waits for running lazy fetches (they read the
   * old root overlaid with records this release drops).
   */
  async commitRoot(ref: StoredRootRef): Promise<void> {
    let open!: () => void;
    this.fetchGate = new Promise<void>((r) => (open = r));
    try {
      if (this.fetching > 0) await new Promise<void>((r) => (this.fetchDrained = r));
      this.fetchDrained = undefined;
      // The marker and every record before it must be durable before the state
      // file names this root: otherwise a crash could replay a log that ends
      // before the marker, and new writes would reuse seqs the root "covers".
      await this.log.sync();
      await this.disk.flush();
      await this.lazy?.persist();
      this.vstate = { ...this.vstate, root: ref };
      writeState(this.dir, this.vstate);
      if (ref.markerSeq > this.log.releasedSeq) await this.log.release(ref.markerSeq);
      this.lag.released(this.log.releasedSeq);
    } finally {
      this.fetchGate = undefined;
      open();
    }
  }

  /** Age (ms) of the oldest write the store does not hold yet (0 when none). */
  uploadLagMs(): number {
    return this.lag.lagMs(this.log.newestSeq, this.log.releasedSeq);
  }

  details(): StoredVolumeDetails {
    const u = this.log.usage();
    return {
      log: { usedBytes: u.usedBytes, capacityBytes: u.capacityBytes, records: u.records, markers: u.markers, waitingWriters: u.waitingWriters, backpressureWaits: this.log.stats().backpressureWaits },
      root: this.vstate.root,
      restore: this.lazy ? this.lazy.progress() : null,
    };
  }

  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    // Writes waiting for log space wait for the uploader, which has stopped: fail them (SHUTTING_DOWN), or they never
    // drain. Writes already in flight that fit still complete (close waits for them).
    this.log.refuseSpaceWaits();
    if (this.requests > 0) await new Promise<void>((r) => (this.drained = r));
    await this.lazy?.stop();
    try {
      await this.log.close();
    } catch (err) {
      this.logger.warn('write log close failed', { err: errorMessage(err) });
    }
    await this.disk.flush().catch(() => undefined);
    await this.disk.close();
    this.state = 'closed';
  }
}

/** A new volume's disk holds data when any extent is data (files); block devices are assumed to. */
async function diskHoldsData(disk: RawVolume): Promise<boolean> {
  const caps = disk.capabilities();
  if (!caps.extents) return true;
  let off = 0;
  while (off < caps.size) {
    const ext = await disk.extents(off, caps.size - off);
    for (const e of ext) {
      if (!e.hole) return true;
      off += e.length;
    }
    if (ext.length === 0) break;
  }
  return false;
}
