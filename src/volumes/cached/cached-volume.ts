// CachedVolume: a BlockDevice whose primary copy is in the object store, as
// snapshot-format blocks under a live root that advances as uploads commit
// (docs/cached-volumes.md). Writes land in a WriteLog and are acknowledged
// from there (FLUSH/FUA = the log's group-committed fdatasync); reads overlay
// the log's dirty pieces on the live root's blocks, which come from the
// ChunkCache (fetched once on a miss, with bounded sequential read-ahead).
// Partial-block writes need no read-modify-write: the log holds the piece,
// and the base block is fetched only when the uploader builds the block.
//
// States: open -> fenced (lease superseded: writes/flushes fail ERR_FENCED,
// reads continue) -> closing -> closed.
// Invariants:
//   - now = live root overlaid with every unreleased log record (newest wins);
//     as of marker M = root overlaid with records <= M;
//   - the log is released up to M only after (1) M is durable in the log,
//     (2) a root covering M is durable in the store, (3) the lease record
//     points at it (conditional put under our epoch: a fenced gateway can
//     never move the live root), and (4) every read that started with the
//     previous root has finished (a read never combines the old root with
//     a log that no longer holds what the new root added);
//   - the cache only holds immutable blocks keyed by content address, so it
//     is never stale; dirty data lives in the log only and is never evicted;
//   - a write is acknowledged only while the lease is not known superseded.
import { BlockgateError, ErrorCodes, errorMessage, isBlockgateError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { BlockDevice, BlockDeviceCapabilities, Extent, WriteFlags, ZeroFlags } from '../../block-device/block-device.js';
import { ChunkCache, ReadAhead, type ChunkCacheStats } from '../../chunk-cache/index.js';
import { Lease, defaultHolder, type LeaseHolder, type LeaseStatus, type TakeoverPolicy } from '../../fencing/lease.js';
import type { ObjectStore } from '../../object-store/object-store.js';
import { SnapshotStore, type Family, type SnapshotRoot } from '../../snapshots/index.js';
import type { ShardEntries } from '../../snapshots/format.js';
import { blockCount, blockHashFromDigest, sha256, validateBlockSize, DEFAULT_BLOCK_SIZE } from '../../snapshots/format.js';
import { allDone } from '../../util/all-done.js';
import { sha256Async } from '../../util/sha256.js';
import { UploadLag } from '../../uploader/upload-lag.js';
import { WriteLog } from '../../write-log/write-log.js';
import type { UploadableVolume } from '../../uploader/uploader.js';
import { join } from 'node:path';
import { loadLocalState, recordKey, type CachedVolumeRecord, type LiveRootRef, type LocalState } from './record.js';

export interface CachedVolumeOptions {
  name: string;
  /** Required for a new empty volume; must match an existing one. */
  size?: number;
  /** New volumes only (default 512 KiB). */
  blockSize?: number;
  logDir: string;
  logCapacityBytes: number;
  cacheDir: string;
  cacheCapacityBytes: number;
  store: ObjectStore;
  snaps: SnapshotStore;
  /** Create the volume from this snapshot root (snap-...) when it does not exist yet. */
  fromSnapshot?: string;
  /** Refuse to create the volume: it must exist in the store (e.g. a persisted run-time volume). */
  mustExist?: boolean;
  holder?: LeaseHolder;
  leaseTtlMs?: number;
  leaseRenewMs?: number;
  takeover?: TakeoverPolicy;
  readAheadBlocks?: number;
  logger?: Logger;
}

/** What VolumeUploader needs from a volume (the stored mode's uploader, reused). */
export type UploadView = UploadableVolume;

export interface CachedVolumeDetails {
  family: string;
  origin: string | null;
  blockSize: number;
  root: LiveRootRef | null;
  cache: Pick<ChunkCacheStats, 'hits' | 'misses' | 'hitRatio' | 'entries' | 'bytesCached' | 'capacityBytes' | 'evictions' | 'fetches' | 'fetchErrors' | 'checksumFailures' | 'prefetchIssued' | 'prefetchUsed' | 'prefetchWasted'>;
  log: { usedBytes: number; capacityBytes: number; records: number; markers: number; waitingWriters: number; backpressureWaits: number; durableSeq: number; releasedSeq: number };
  lease: LeaseStatus;
  fenced: boolean;
}

const MAX_REQUEST = 32 * 1024 * 1024;
/** Shards kept in CachedVolume's memo (1024 blocks = 512 MiB of volume each at defaults). */
const SHARD_MEMO = 16;
const EXTENT_BLOCKS = 256;

export class CachedVolume implements BlockDevice {
  private readonly caps: BlockDeviceCapabilities;
  private state: 'open' | 'closing' | 'closed' = 'open';
  private requests = 0;
  private drained: (() => void) | undefined;
  private listeners: Array<() => void> = [];
  /** Current live root (null: the volume is all zeros in the store). */
  private rootObj: SnapshotRoot | null;
  private rootRef: LiveRootRef | null;
  /** Reads in progress per root generation. */
  private gen = 0;
  /** Reads in progress that started in the current generation (a plain counter: the hot path). */
  private currentReaders = 0;
  /** Reads in progress per older generation (left over when the root moved). */
  private readonly olderReaders = new Map<number, number>();
  private readerWaiters: Array<() => void> = [];
  private readonly readAhead: ReadAhead | undefined;
  private readonly lag = new UploadLag();
  /** The last SHARD_MEMO shards looked up (key → entries, FIFO), for synchronous hash lookups on the read path. */
  private readonly shardMemo = new Map<string, ShardEntries>();
  readonly blocks: number;
  readonly view: UploadView;

  private constructor(
    readonly name: string,
    readonly record: CachedVolumeRecord,
    readonly log: WriteLog,
    readonly chunks: ChunkCache,
    readonly snaps: SnapshotStore,
    readonly family: Family,
    readonly lease: Lease<CachedVolumeRecord>,
    private readonly local: LocalState,
    root: SnapshotRoot | null,
    private readonly logger: Logger,
    readAheadBlocks: number,
  ) {
    this.rootObj = root;
    this.rootRef = record.root;
    this.blocks = blockCount(record.size, record.blockSize);
    this.caps = Object.freeze({
      size: record.size, readOnly: false, minBlockSize: 1, preferredBlockSize: 4096, maxBlockSize: MAX_REQUEST,
      flush: true, fua: 'native', trim: true, zero: 'native', fastZero: true, cache: 'native', extents: true,
      multiConn: true, rotational: false,
    } satisfies BlockDeviceCapabilities);
    this.readAhead = readAheadBlocks > 0 ? new ReadAhead(chunks, (i) => this.resolveBlock(i), { window: readAheadBlocks, blockCount: this.blocks, logger }) : undefined;
    lease.onFenced((err) => {
      this.logger.error('volume fenced: another gateway owns it now; every further write and flush fails', { err: err.message });
    });
    const self = this;
    this.view = {
      name: record.family, size: record.size, blockSize: record.blockSize, snaps, log,
      get root() { return self.uploadRoot(); },
      onActivity: (l) => { this.listeners.push(l); },
      appendMarker: (p) => this.appendMarker(p),
      blockAsOf: (i, m, parent, covered) => this.blockAsOf(i, m, parent, covered),
      commitRoot: (ref) => this.commitRoot(ref),
    };
  }

  get size(): number { return this.record.size; }
  get blockSize(): number { return this.record.blockSize; }
  get fenced(): boolean { return this.lease.fenced; }
  get liveRoot(): LiveRootRef | null { return this.rootRef; }
  get logId(): string { return this.local.logId; }

  static async open(o: CachedVolumeOptions): Promise<CachedVolume> {
    const logger = (o.logger ?? silentLogger).child({ component: 'cached-volume', volume: o.name });
    const local = loadLocalState(o.logDir, o.name);
    const holder = o.holder ?? defaultHolder(local.logId);
    const lease = await Lease.acquire<CachedVolumeRecord>({
      store: o.store, key: recordKey(o.name), resource: `volume ${o.name}`, holder, logger,
      ...(o.leaseTtlMs !== undefined ? { ttlMs: o.leaseTtlMs } : {}),
      ...(o.leaseRenewMs !== undefined ? { renewMs: o.leaseRenewMs } : {}),
      ...(o.takeover !== undefined ? { takeover: o.takeover } : {}),
      ...(o.mustExist ? {} : { create: () => newRecord(o) }),
    });
    let log: WriteLog | undefined;
    let cache: ChunkCache | undefined;
    try {
      let rec = lease.data;
      if (rec.volume !== o.name) throw new BlockgateError(ErrorCodes.CONFIG, `${recordKey(o.name)} describes volume ${rec.volume}`);
      if (o.size !== undefined && o.size !== rec.size) {
        throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name} has size ${rec.size} in the store; the configuration says ${o.size} (resizing is not supported)`);
      }
      if (o.blockSize !== undefined && o.blockSize !== rec.blockSize) {
        throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name} has block size ${rec.blockSize} in the store; the configuration says ${o.blockSize}`);
      }
      if (o.fromSnapshot !== undefined && rec.origin !== o.fromSnapshot) {
        logger.warn('fromSnapshot ignored: the volume already exists in the store', { fromSnapshot: o.fromSnapshot, origin: rec.origin });
      }
      log = await WriteLog.open(join(o.logDir, 'log'), { capacityBytes: o.logCapacityBytes, volumeId: o.name, logger });
      // Reconcile the log with the live root.
      const root = rec.root;
      if (root && root.log === local.logId) {
        const upto = Math.min(root.markerSeq, log.newestSeq);
        if (upto > log.releasedSeq) await log.release(upto);
      } else if (log.newestSeq > log.releasedSeq && root && root.log !== null) {
        throw new BlockgateError(ErrorCodes.FENCED,
          `volume ${o.name}: the write log in ${o.logDir} holds ${log.newestSeq - log.releasedSeq} record(s) that were never committed to the store, ` +
          `and another writer (log ${root.log}) has since advanced the volume to root ${root.id}; they will not be applied on top of newer data. ` +
          `Move ${o.logDir} away to discard them (or keep it for forensics) and start again.`);
      }
      const family = await o.snaps.ensureFamily(rec.family, rec.blockSize);
      let rootObj = root ? await o.snaps.getRoot(root.id) : null;
      if (rootObj && (rootObj.size !== rec.size || rootObj.blockSize !== rec.blockSize)) {
        throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `volume ${o.name}: live root ${rootObj.id} has size ${rootObj.size}/${rootObj.blockSize}, the record says ${rec.size}/${rec.blockSize}`);
      }
      // A clone's first live root is its own (an O(1) root sharing the origin's shards), so deleting the origin snapshot never affects it.
      if (rootObj && root && root.log === null && rec.origin !== null && root.id === rec.origin) {
        const own = await ownRoot(o.snaps, rec, rootObj, 'created');
        const ref: LiveRootRef = { id: own.id, markerSeq: 0, log: null, createdAt: own.createdAt };
        await lease.update((d) => ({ ...d, root: ref }));
        rec = lease.data;
        rootObj = own;
      }
      cache = await ChunkCache.open({ dir: o.cacheDir, blockSize: rec.blockSize, capacityBytes: o.cacheCapacityBytes, logger });
      const vol = new CachedVolume(o.name, rec, log, cache, o.snaps, family, lease, local, rootObj, logger, o.readAheadBlocks ?? 8);
      if (log.newestSeq > log.releasedSeq) vol.lag.appended(log.releasedSeq + 1);
      logger.info('cached volume open', {
        size: rec.size, blockSize: rec.blockSize, family: rec.family, root: rec.root?.id ?? null, epoch: lease.epoch,
        unreleasedRecords: log.newestSeq - log.releasedSeq, cachedBlocks: cache.stats().entries,
      });
      return vol;
    } catch (err) {
      await cache?.close().catch(() => undefined);
      await log?.close().catch(() => undefined);
      lease.stop();
      throw err;
    }
  }

  capabilities(): BlockDeviceCapabilities {
    return this.caps;
  }

  // ------------------------------------------------------------ requests

  private enter(): void {
    if (this.state !== 'open') throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `cached volume ${this.name} is closed`);
    this.requests++;
  }

  private leave(): void {
    if (--this.requests === 0 && this.drained) this.drained();
  }

  private checkWritable(): void {
    const err = this.lease.fencedError;
    if (err) throw err;
  }

  private beginRead(): number {
    const g = this.gen;
    this.currentReaders++;
    return g;
  }

  private endRead(g: number): void {
    if (g === this.gen) { this.currentReaders--; return; } // nobody waits for the current generation
    const n = (this.olderReaders.get(g) ?? 1) - 1;
    if (n === 0) this.olderReaders.delete(g); else this.olderReaders.set(g, n);
    if (n === 0 && this.readerWaiters.length > 0) for (const w of this.readerWaiters.splice(0)) w();
  }

  /** Waits until no read that started before generation `g` is running. */
  private async readersBefore(g: number): Promise<void> {
    while ([...this.olderReaders.keys()].some((k) => k < g)) await new Promise<void>((r) => this.readerWaiters.push(r));
  }

  async read(target: Buffer, offset: number): Promise<void> {
    this.enter();
    const g = this.beginRead();
    try {
      const root = this.rootObj;
      const bs = this.blockSize;
      const end = offset + target.length;
      const first = Math.floor(offset / bs);
      const last = Math.floor((end - 1) / bs);
      if (first === last) {
        // Within one block (every 4 KiB request): no job array, no subarray, no Promise.all,
        // and a cache hit in the page cache is served without another promise.
        if (!this.readBlockNow(root, first, offset, end, target)) await this.readBlockRange(root, first, offset, end, target);
      } else {
        const jobs: Array<Promise<void>> = [];
        for (let i = first; i <= last; i++) {
          const s = Math.max(offset, i * bs);
          const e = Math.min(end, (i + 1) * bs);
          jobs.push(this.readBlockRange(root, i, s, e, target.subarray(s - offset, e - offset)));
        }
        await allDone(jobs); // every block, even when one fails: the caller reuses `target` once we settle
      }
    } finally {
      this.endRead(g);
      this.leave();
    }
  }

  /**
   * readBlockRange when it can be done synchronously: nothing dirty in the
   * range, the block's shard in the memo, and the block a zero block or a
   * cache hit that ChunkCache.readNow serves at once. False: nothing was
   * done (apart from a damaged cache entry being dropped); use readBlockRange.
   */
  private readBlockNow(root: SnapshotRoot | null, i: number, s: number, e: number, into: Buffer): boolean {
    if (this.log.lookup(s, e - s).length > 0) return false;
    const hash = root ? this.memoHash(root, i) : null;
    if (hash === undefined) return false;
    if (hash === null) {
      into.fill(0);
    } else {
      const n = this.chunks.readNow(hash, into, s - i * this.blockSize);
      if (n < 0) return false;
      if (n < into.length) into.fill(0, n);
    }
    this.readAhead?.access(i);
    return true;
  }

  /** Bytes [s, e) of block i into `into`: base (cache/store/zeros) where the log does not cover, then the log on top. */
  private async readBlockRange(root: SnapshotRoot | null, i: number, s: number, e: number, into: Buffer): Promise<void> {
    const pieces = this.log.lookup(s, e - s);
    let covered = 0;
    for (const p of pieces) covered += p.length;
    if (covered < e - s) {
      let hash = root ? this.hashAt(root, i) : null;
      if (typeof hash === 'object' && hash !== null) hash = await hash; // a shard not in the memo
      if (hash === null) {
        into.fill(0);
      } else {
        const n = await this.chunks.read(hash, this.fetcher(root!, hash, i), into, s - i * this.blockSize);
        if (n < into.length) into.fill(0, n);
      }
      this.readAhead?.access(i);
    }
    if (pieces.length > 0) await this.log.readDirty(s, e - s, into);
  }

  /**
   * Block i's hash in `root` (null: a zero block), as SnapshotStore.blockHashAt
   * but synchronously when its shard is in the memo; otherwise the shard comes
   * from SnapshotStore.readShard (its LRU, or the store) and is remembered.
   * Shards are immutable (content-addressed), so a memo entry never goes
   * stale when the live root moves.
   */
  private hashAt(root: SnapshotRoot, i: number): string | null | Promise<string | null> {
    const known = this.memoHash(root, i);
    if (known !== undefined) return known;
    const ref = root.shards[Math.floor(i / root.shardBlocks)]!;
    return this.snaps.readShard(ref.k, () => `snapshot ${root.id} block ${i}`).then((got) => {
      if (this.shardMemo.size >= SHARD_MEMO) this.shardMemo.delete(this.shardMemo.keys().next().value!); // oldest first
      this.shardMemo.set(ref.k, got);
      return got.get(i % root.shardBlocks) ?? null;
    });
  }

  /** hashAt from the memo only: undefined when the block's shard is not in it. */
  private memoHash(root: SnapshotRoot, i: number): string | null | undefined {
    const ref = i < this.blocks ? root.shards[Math.floor(i / root.shardBlocks)] : undefined;
    if (!ref) return null; // past the end, or an all-zero shard (as blockHashAt)
    const entries = this.shardMemo.get(ref.k);
    return entries === undefined ? undefined : entries.get(i % root.shardBlocks) ?? null;
  }

  private fetcher(root: SnapshotRoot, hash: string, i: number): () => Promise<Buffer> {
    return () => this.snaps.readBlockObject(this.family, hash, () => `volume ${this.name} (snapshot ${root.id}) block ${i}`);
  }

  private async resolveBlock(i: number): Promise<{ key: string; fetch: () => Promise<Buffer> } | null> {
    const root = this.rootObj;
    if (!root || this.state !== 'open') return null;
    const hash = await this.snaps.blockHashAt(root, i);
    return hash === null ? null : { key: hash, fetch: this.fetcher(root, hash, i) };
  }

  private noteAppended(seq: number): void {
    this.lag.appended(seq);
    for (const l of this.listeners) l();
  }

  async write(data: Buffer, offset: number, flags: WriteFlags): Promise<void> {
    this.enter();
    try {
      this.checkWritable();
      this.noteAppended(await this.log.append(offset, data));
      if (flags.fua) await this.log.sync();
      this.checkWritable();
    } catch (err) {
      throw this.failure(err, 'write');
    } finally {
      this.leave();
    }
  }

  async zero(offset: number, length: number, flags: ZeroFlags): Promise<void> {
    this.enter();
    try {
      this.checkWritable();
      this.noteAppended(await this.log.appendZero(offset, length, { trim: flags.mayTrim }));
      if (flags.fua) await this.log.sync();
      this.checkWritable();
    } catch (err) {
      throw this.failure(err, 'zero');
    } finally {
      this.leave();
    }
  }

  async trim(offset: number, length: number, flags: WriteFlags): Promise<void> {
    await this.zero(offset, length, { fua: flags.fua, mayTrim: true, fast: false });
  }

  async flush(): Promise<void> {
    this.enter();
    try {
      this.checkWritable();
      await this.log.sync();
      this.checkWritable();
    } catch (err) {
      throw this.failure(err, 'flush');
    } finally {
      this.leave();
    }
  }

  private failure(err: unknown, op: string): unknown {
    if (isBlockgateError(err, ErrorCodes.FENCED)) this.logger.error(`${op} refused: volume is fenced`, { err: errorMessage(err) });
    return err;
  }

  async cache(offset: number, length: number): Promise<void> {
    this.enter();
    try {
      const bs = this.blockSize;
      const jobs: Array<Promise<void>> = [];
      for (let i = Math.floor(offset / bs); i <= Math.floor((offset + length - 1) / bs); i++) {
        const src = await this.resolveBlock(i);
        if (src) jobs.push(this.chunks.prefetch(src.key, src.fetch));
      }
      await Promise.all(jobs);
    } finally {
      this.leave();
    }
  }

  /**
   * Holes: blocks that the live root does not store and the log does not
   * touch (they read as zeros). Counted as a read of the root it started
   * with, so that commitRoot does not release the log under it (else a block
   * only in the log, not in that root, would be reported as a hole).
   */
  async extents(offset: number, length: number): Promise<Extent[]> {
    this.enter();
    const g = this.beginRead();
    try {
      const bs = this.blockSize;
      const root = this.rootObj;
      const out: Extent[] = [];
      const end = Math.min(this.size, offset + length);
      let pos = offset;
      for (let n = 0; pos < end && n < EXTENT_BLOCKS; n++) {
        const i = Math.floor(pos / bs);
        const blockEnd = Math.min(this.size, (i + 1) * bs);
        const hole = (root ? await this.snaps.blockHashAt(root, i) : null) === null && this.log.lookup(pos, blockEnd - pos).length === 0;
        const prev = out[out.length - 1];
        if (prev && prev.hole === hole) out[out.length - 1] = { ...prev, length: prev.length + blockEnd - pos };
        else out.push({ length: blockEnd - pos, hole, zero: hole });
        pos = blockEnd;
      }
      return out;
    } finally {
      this.endRead(g);
      this.leave();
    }
  }

  // ------------------------------------------------------------ uploads (VolumeUploader through `view`)

  private uploadRoot(): { id: string; markerSeq: number; createdAt: string } | null {
    const r = this.rootRef;
    if (!r) return null;
    return { id: r.id, markerSeq: r.log === this.local.logId ? r.markerSeq : 0, createdAt: r.createdAt };
  }

  async appendMarker(payload: Record<string, unknown>): Promise<number> {
    const seq = await this.log.appendMarker({ ...payload, at: new Date().toISOString() });
    for (const l of this.listeners) l();
    return seq;
  }

  /**
   * Block `index` as of marker `markerSeq`: `parent`'s block (through the
   * cache) overlaid with the log as of the marker. The result is cached
   * under its content address, so reads after the log is released hit.
   */
  async blockAsOf(index: number, markerSeq: number, parent: SnapshotRoot | null, covered: boolean): Promise<Buffer> {
    const bs = this.blockSize;
    const off = index * bs;
    const len = Math.min(bs, this.size - off);
    const full = Buffer.alloc(bs);
    if (!covered && parent) {
      const hash = await this.snaps.blockHashAt(parent, index);
      if (hash !== null) {
        const base = await this.chunks.get(hash, this.fetcher(parent, hash, index));
        base.copy(full, 0, 0, Math.min(bs, base.length));
      }
    }
    await this.log.readDirty(off, len, full, { asOf: markerSeq });
    if (len < bs) full.fill(0, len);
    const hash = blockHashFromDigest(this.family.key, await sha256Async(full));
    void this.chunks.put(hash, full).catch(() => undefined);
    return len === bs ? full : full.subarray(0, len);
  }

  /**
   * The store durably holds the volume as of `ref.markerSeq` (root ref.id).
   * Makes the marker durable in the log, moves the live root in the lease
   * record (conditional: fails ERR_FENCED when superseded, and then deletes
   * the orphan root), switches reads to it, then releases the log.
   */
  async commitRoot(ref: { id: string; markerSeq: number; createdAt: string }): Promise<void> {
    await this.log.sync();
    const live: LiveRootRef = { id: ref.id, markerSeq: ref.markerSeq, log: this.local.logId, createdAt: ref.createdAt };
    if (this.rootRef?.id !== ref.id) {
      try {
        await this.lease.update((d) => ({ ...d, root: live }));
      } catch (err) {
        if (isBlockgateError(err, ErrorCodes.FENCED)) await this.snaps.delete(ref.id).catch(() => undefined);
        throw err;
      }
      const root = await this.snaps.getRoot(ref.id);
      this.rootObj = root;
      this.rootRef = live;
      if (this.currentReaders > 0) this.olderReaders.set(this.gen, this.currentReaders);
      this.currentReaders = 0;
      const g = ++this.gen;
      await this.readersBefore(g);
    }
    if (ref.markerSeq > this.log.releasedSeq) await this.log.release(ref.markerSeq);
    this.lag.released(this.log.releasedSeq);
  }

  /** Age (ms) of the oldest write the store does not hold yet (0 when none). */
  uploadLagMs(): number {
    return this.lag.lagMs(this.log.newestSeq, this.log.releasedSeq);
  }

  details(): CachedVolumeDetails {
    const u = this.log.usage();
    const c = this.chunks.stats();
    return {
      family: this.record.family, origin: this.record.origin, blockSize: this.blockSize, root: this.rootRef,
      cache: {
        hits: c.hits, misses: c.misses, hitRatio: Math.round(c.hitRatio * 10000) / 10000, entries: c.entries, bytesCached: c.bytesCached,
        capacityBytes: c.capacityBytes, evictions: c.evictions, fetches: c.fetches, fetchErrors: c.fetchErrors, checksumFailures: c.checksumFailures,
        prefetchIssued: c.prefetchIssued, prefetchUsed: c.prefetchUsed, prefetchWasted: c.prefetchWasted,
      },
      log: {
        usedBytes: u.usedBytes, capacityBytes: u.capacityBytes, records: u.records, markers: u.markers, waitingWriters: u.waitingWriters,
        backpressureWaits: this.log.stats().backpressureWaits, durableSeq: u.durableSeq, releasedSeq: u.releasedSeq,
      },
      lease: this.lease.status(),
      fenced: this.lease.fenced,
    };
  }

  /**
   * Closes the log and the cache. The lease is released (another gateway may
   * open the volume at once) only when the store holds every write;
   * otherwise it stays held so that only this gateway (which holds the rest
   * in its log) can reopen it before it expires.
   */
  async close(): Promise<void> {
    if (this.state !== 'open') return;
    this.state = 'closing';
    // Writes waiting for log space wait for the uploader, which has stopped: fail them (SHUTTING_DOWN), or they never
    // drain. Writes already in flight that fit still complete (close waits for them).
    this.log.refuseSpaceWaits();
    if (this.requests > 0) await new Promise<void>((r) => (this.drained = r));
    await this.readAhead?.idle();
    const drainedLog = this.log.newestSeq <= this.log.releasedSeq;
    try {
      await this.log.close();
    } catch (err) {
      this.logger.warn('write log close failed', { err: errorMessage(err) });
    }
    await this.chunks.close().catch((err: unknown) => this.logger.warn('chunk cache close failed', { err: errorMessage(err) }));
    if (drainedLog && !this.lease.fenced) {
      await this.lease.release().catch((err: unknown) => this.logger.warn('could not release the lease (it will expire)', { err: errorMessage(err) }));
    } else {
      this.lease.stop();
    }
    this.state = 'closed';
  }
}

async function newRecord(o: CachedVolumeOptions): Promise<CachedVolumeRecord> {
  const createdAt = new Date().toISOString();
  if (o.fromSnapshot !== undefined) {
    const src = await o.snaps.getRoot(o.fromSnapshot);
    if (o.size !== undefined && o.size !== src.size) {
      throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: size ${o.size} differs from snapshot ${src.id}'s size ${src.size} (resizing is not supported)`);
    }
    if (o.blockSize !== undefined && o.blockSize !== src.blockSize) {
      throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: block size ${o.blockSize} differs from snapshot ${src.id}'s ${src.blockSize}`);
    }
    return {
      volume: o.name, family: src.volume, size: src.size, blockSize: src.blockSize, origin: src.id, createdAt,
      root: { id: src.id, markerSeq: 0, log: null, createdAt: src.createdAt },
    };
  }
  if (o.size === undefined) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name} does not exist yet: give its size (or fromSnapshot)`);
  if (!Number.isSafeInteger(o.size) || o.size <= 0) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: invalid size ${o.size}`);
  const blockSize = o.blockSize ?? DEFAULT_BLOCK_SIZE;
  validateBlockSize(blockSize);
  const fam = await o.snaps.getFamily(o.name);
  if (fam && fam.blockSize !== blockSize) {
    throw new BlockgateError(ErrorCodes.CONFIG, `volume ${o.name}: snapshots of a volume with this name already exist with block size ${fam.blockSize}; use that block size or another name`);
  }
  return { volume: o.name, family: o.name, size: o.size, blockSize, origin: null, createdAt, root: null };
}

/** A root of `rec`'s volume with no changed blocks on top of `base` (O(1): shards are shared). */
async function ownRoot(snaps: SnapshotStore, rec: CachedVolumeRecord, base: SnapshotRoot, kind: string): Promise<SnapshotRoot> {
  const s = await snaps.start({
    volume: rec.family, size: rec.size, blockSize: rec.blockSize, parent: base.id,
    description: JSON.stringify({ blockgate: 'cached', volume: rec.volume, kind: 'auto', event: kind, origin: base.id }),
  });
  try {
    return await s.complete(0, aggregateEmpty);
  } catch (err) {
    await s.abort().catch(() => undefined);
    throw err;
  }
}

const aggregateEmpty = sha256(Buffer.alloc(0)).toString('base64');
