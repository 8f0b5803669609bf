// ChunkCache: hot snapshot blocks of cached volumes, kept in a local cache
// directory (docs/chunk-cache.md): a sparse file of fixed-size slots (slot
// size = block size) and a LevelDB index (block key → slot, size, last use,
// per-4-KiB CRC32C). Blocks are immutable by key, so an entry is never stale;
// it can only be missing or damaged.
//
// States of a key:
//   absent ──miss──► fetching (one shared fetch; failure → absent, nothing kept)
//   fetching ──ok──► writing (slot taken; readers served from the fetched
//                    Buffer; the write runs in the background)
//   writing ──write ok──► ready (in the index)
//   writing ──write failed──► absent (slot freed)
//   ready ──evicted (LRU, clean, unpinned, no reader) | CRC mismatch | I/O error──► absent
// Invariants:
//   - at most one fetch per key is in flight; every concurrent miss shares it;
//   - entries ≤ slots = floor(capacityBytes / blockSize): the cap holds by construction;
//   - the LRU holds exactly the unpinned entries, in access order (a miss
//     counts as an access); eviction takes the least recent one that is ready
//     and has no read of its slot in progress: pinned and writing entries are never evicted;
//   - a slot is reused only after its entry has left the maps and its last reader finished;
//   - every byte served from a slot was checked against the index's CRC32C
//     first, on that very read; a mismatch drops the entry and the block is
//     fetched again;
//   - small slot reads (<= nowaitMax) first try preadv2(RWF_NOWAIT) on the
//     event loop (page-cache hit: no thread-pool hop); anything short of the
//     whole read goes to the thread pool, where the native addon reads and
//     CRC-checks it (preadVerify; the large reads of one tick share one job,
//     see verify-batch.ts). Nothing waits for a disk on the loop;
//   - index writes go through one ordered queue; an entry is put only after
//     its slot write, and a slot is rewritten only after its previous entry's
//     delete reached LevelDB, so a process kill at any point leaves every
//     indexed entry intact (a write in flight is simply not indexed);
//   - nothing is fsynced: power loss may lose recent index updates or slot
//     writes, leaving entries missing (cold) or failing their CRC (dropped on
//     read), never wrong data served;
//   - background work is bounded: maxPendingWrites slot writes, maxPrefetches prefetches.

import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { Level } from 'level';
import { LRUCache } from 'lru-cache';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import * as native from '../native/index.js';
import { tuning } from '../config/tuning.js';
import { validateBlockSize } from '../snapshots/format.js';
import { allDone } from '../util/all-done.js';
import { VerifyBatcher } from './verify-batch.js';
import {
  CACHE_FORMAT_VERSION, ENTRY_END, ENTRY_PREFIX, HEADER_BYTES, HEADER_USED, META_KEY, UNIT_BYTES,
  decodeEntry, decodeHeader, encodeEntry, encodeHeader, headerVersion, unitCrcs, unitsMatch,
} from './format.js';

/** Produces the whole block (plaintext, at most blockSize bytes), e.g. SnapshotStore.readBlockObject. */
export type Fetcher = () => Promise<Buffer>;

export interface ChunkCacheOptions {
  /** Cache directory (created if missing). One ChunkCache per directory at a time. */
  dir: string;
  /** Block size of the volumes using this cache (power of two, 64 KiB–4 MiB). */
  blockSize: number;
  /** Cap on cached block bytes (slots = floor(capacityBytes / blockSize)). */
  capacityBytes: number;
  logger?: Logger;
  /** Slot writes allowed in the background at once; a miss beyond this is served but not cached (default 32). */
  maxPendingWrites?: number;
  /** Prefetches in flight at once, cache-wide (default 16). */
  maxPrefetches?: number;
  /** How often last-use times are persisted (default 30 s; 0 = only on flush/close). */
  indexFlushMs?: number;
  /**
   * Slot reads up to this many bytes first try a non-blocking copy from the
   * page cache on the event loop (preadv2 RWF_NOWAIT, as RawVolume does),
   * skipping the thread-pool round trip on a page-cache hit; 0 disables.
   * Default: the daemon config's tuning.nowaitMax (64 KiB unless set).
   */
  nowaitMax?: number;
  /**
   * Check slot reads that go to the thread pool there too (the native addon's
   * preadVerify), keeping CRC32C work off the event loop. Default true when
   * the addon is available; false (tests) checks them on the event loop.
   */
  nativeVerify?: boolean;
}

/** Large slot reads of one tick share a thread-pool job up to this many bytes (a 1 MiB NBD read: one job). */
const VERIFY_JOB_BYTES = 1024 * 1024;
/** Slot reads below this size get a thread-pool job each (see verify-batch.ts). */
const VERIFY_BATCH_MIN = 64 * 1024;

export interface ChunkCacheStats {
  hits: number;
  misses: number;
  /** hits / (hits + misses), 0 before the first lookup. */
  hitRatio: number;
  /** Fetches started (concurrent misses on one key count once). */
  fetches: number;
  fetchErrors: number;
  entries: number;
  /** Bytes of block data held (entries' sizes). */
  bytesCached: number;
  capacityBytes: number;
  slots: number;
  pinnedKeys: number;
  evictions: number;
  /** Slot content that failed its CRC (entry dropped, block refetched). */
  checksumFailures: number;
  /** Slot reads served from the page cache on the event loop (RWF_NOWAIT), without a thread-pool hop. */
  nowaitReads: number;
  readErrors: number;
  writeErrors: number;
  indexErrors: number;
  /** Fetched blocks not cached: every slot pinned/busy, or too many writes pending. */
  insertsSkipped: number;
  pendingWrites: number;
  prefetchIssued: number;
  /** Prefetched blocks later read (by a hit or by joining the prefetch). */
  prefetchUsed: number;
  /** Prefetched blocks evicted unread, not cached, or whose fetch failed. */
  prefetchWasted: number;
  prefetchInFlight: number;
  /** 1 when open() found no trustworthy cache and started empty. */
  resets: number;
}

interface Entry {
  readonly key: string;
  readonly slot: number;
  readonly size: number;
  readonly crcs: Uint32Array;
  lastUse: number;
  /** lastUse as last written to the index (NaN: not yet). */
  persistedUse: number;
  /** The block while its slot write is in progress (state "writing"); undefined when ready. */
  data: Buffer | undefined;
  readers: number;
  /** Left the maps (evicted/dropped); the slot is freed when readers reaches 0. */
  gone: boolean;
  /** Fetched by a prefetch and not read since. */
  prefetched: boolean;
}

interface Flight {
  promise: Promise<Buffer>;
  /** Started by prefetch() and not yet joined by a reader. */
  unclaimedPrefetch: boolean;
}

/** Part of a slot read: block bytes [pos, pos + buf.length), whole checksum units. */
interface Part {
  pos: number;
  buf: Uint8Array;
  /** buf is a scratch unit (an unaligned edge), copied into the caller's buffer after its check. */
  scratch: boolean;
}

type IndexOp = { type: 'put'; key: string; value: Buffer } | { type: 'del'; key: string };

const MAX_KEY_LENGTH = 1024;
const MAX_INDEX_BATCH = 10_000;

export class ChunkCache {
  readonly dir: string;
  readonly blockSize: number;
  readonly slots: number;
  private readonly log: Logger;
  private readonly maxPendingWrites: number;
  private readonly maxPrefetches: number;
  /** 0 once RWF_NOWAIT turned out unsupported (or the addon is missing). */
  private nowaitMax: number;
  /** Thread-pool slot reads are checked on the pool (native, batched per tick); undefined: checked on the event loop. */
  private readonly verifier: VerifyBatcher | undefined;
  /** fh's descriptor (fixed until close; no read starts after close begins). */
  private readonly fd: number;
  private readonly entries = new Map<string, Entry>();
  /** Unpinned entries in access order (eviction candidates once ready). */
  private readonly lru: LRUCache<string, Entry>;
  private readonly freeSlots: number[] = [];
  /** Slots ≥ this were never used since open. */
  private nextFresh = 0;
  private readonly pins = new Map<string, number>();
  private readonly inflight = new Map<string, Flight>();
  /** Entries whose lastUse changed since it was persisted. */
  private readonly touched = new Set<Entry>();
  private readonly io = new Set<Promise<unknown>>();
  /** Index updates not yet handed to LevelDB, and how to tell their producers when they are. */
  private nextBatch: { ops: IndexOp[]; applied: Promise<void>; resolve: () => void } | undefined;
  private indexDrain: Promise<void> | undefined;
  private clock = 0;
  private bytesCached = 0;
  private pendingWrites = 0;
  private prefetchInFlight = 0;
  private closed = false;
  private closing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly c = {
    hits: 0, misses: 0, fetches: 0, fetchErrors: 0, evictions: 0, checksumFailures: 0, nowaitReads: 0, readErrors: 0,
    writeErrors: 0, indexErrors: 0, insertsSkipped: 0, prefetchIssued: 0, prefetchUsed: 0, prefetchWasted: 0, resets: 0,
  };

  private constructor(options: ChunkCacheOptions, slots: number, private readonly db: Level<string, Buffer>, private readonly fh: FileHandle) {
    this.dir = options.dir;
    this.blockSize = options.blockSize;
    this.slots = slots;
    this.log = (options.logger ?? silentLogger).child({ component: 'chunk-cache', dir: options.dir });
    this.maxPendingWrites = options.maxPendingWrites ?? 32;
    this.maxPrefetches = options.maxPrefetches ?? 16;
    const hasNative = native.nativeAvailable();
    this.nowaitMax = hasNative ? options.nowaitMax ?? tuning().nowaitMax : 0;
    this.verifier = hasNative && (options.nativeVerify ?? true) ? new VerifyBatcher(fh.fd, UNIT_BYTES, VERIFY_JOB_BYTES, VERIFY_BATCH_MIN) : undefined;
    this.fd = fh.fd;
    // The bound is never reached (at most `slots` entries; we evict ourselves).
    // maxSize rather than max: max preallocates arrays of that length.
    this.lru = new LRUCache<string, Entry>({ maxSize: slots + 1, sizeCalculation: () => 1 });
    const flushMs = options.indexFlushMs ?? 30_000;
    if (flushMs > 0) {
      this.timer = setInterval(() => this.persistLastUse(), flushMs);
      this.timer.unref();
    }
  }

  /** Opens (or creates) the cache in `options.dir`; an untrustworthy cache is reset to empty. */
  static async open(options: ChunkCacheOptions): Promise<ChunkCache> {
    validateBlockSize(options.blockSize);
    const { dir, blockSize, capacityBytes } = options;
    if (!Number.isSafeInteger(capacityBytes)) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `chunk cache size must be a whole number of bytes, got ${capacityBytes}`);
    }
    if (capacityBytes < blockSize) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT,
        `chunk cache size ${capacityBytes} bytes is smaller than one block (${blockSize} bytes); give it at least one block, better thousands`);
    }
    const slots = Math.min(Math.floor(capacityBytes / blockSize), 0xffff_ffff);
    for (const [name, v] of [['maxPendingWrites', options.maxPendingWrites], ['maxPrefetches', options.maxPrefetches]] as const) {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 1)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `chunk cache ${name} must be an integer >= 1, got ${v}`);
    }
    if (options.nowaitMax !== undefined && !(Number.isSafeInteger(options.nowaitMax) && options.nowaitMax >= 0)) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `chunk cache nowaitMax must be an integer >= 0, got ${options.nowaitMax}`);
    }
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const log = (options.logger ?? silentLogger).child({ component: 'chunk-cache', dir });
    const db = await openIndex(join(dir, 'index'), log);
    let fh: FileHandle | undefined;
    try {
      fh = await open(join(dir, 'slots.dat'), constants.O_RDWR | constants.O_CREAT, 0o600);
      const cache = new ChunkCache(options, slots, db, fh);
      await cache.load();
      return cache;
    } catch (err) {
      await fh?.close().catch(() => {});
      await db.close().catch(() => {});
      throw err;
    }
  }

  // ------------------------------------------------------------ reads

  /**
   * The whole block for `key`: from its slot, or by `fetch` on a miss (shared
   * by concurrent misses; the block is cached in the background). The Buffer
   * may be shared with other readers: treat it as read-only.
   */
  async get(key: string, fetch: Fetcher): Promise<Buffer> {
    this.checkOpen();
    checkKey(key);
    const e = this.entries.get(key);
    if (e) {
      if (e.data) { this.hit(e); return e.data; }
      const buf = Buffer.allocUnsafe(e.size);
      let ok = this.readSlot(e, buf, 0);
      if (typeof ok !== 'boolean') ok = await ok;
      if (ok) { this.hit(e); return buf; }
    }
    this.c.misses++;
    return this.fetchShared(key, fetch, false);
  }

  /**
   * Copies block bytes from `offsetInBlock` into `target` (as many as fit, up to
   * the block's end) and returns how many. A hit reads only the 4 KiB units it
   * needs, straight into `target` (a scratch unit only for an unaligned edge),
   * and checks each unit's CRC before returning.
   */
  async read(key: string, fetch: Fetcher, target: Uint8Array, offsetInBlock = 0): Promise<number> {
    this.checkOpen();
    checkKey(key);
    this.checkOffset(offsetInBlock);
    const e = this.entries.get(key);
    if (e) {
      const n = Math.max(0, Math.min(target.length, e.size - offsetInBlock));
      if (e.data) { e.data.copy(target, 0, offsetInBlock, offsetInBlock + n); this.hit(e); return n; }
      let ok = this.readSlot(e, n === target.length ? target : target.subarray(0, n), offsetInBlock);
      if (typeof ok !== 'boolean') ok = await ok; // no extra tick when served synchronously
      if (ok) { this.hit(e); return n; }
    }
    this.c.misses++;
    const data = await this.fetchShared(key, fetch, false);
    return offsetInBlock >= data.length ? 0 : data.copy(target, 0, offsetInBlock);
  }

  /**
   * read() for when the answer is at hand: copies block bytes into `target`
   * as read() does and returns how many, but only if that can be done
   * synchronously (a cached block whose bytes are in the page cache, read
   * with RWF_NOWAIT and CRC-checked like every hit, or a block still held in
   * memory); otherwise returns -1 having done nothing (not cached, not in the
   * page cache, too large for the fast path, or damaged: then the entry is
   * dropped), and the caller calls read(), which waits for the thread pool or
   * a fetch. Saves the promise and its microtask hop on the hottest path.
   */
  readNow(key: string, target: Uint8Array, offsetInBlock = 0): number {
    this.checkOpen();
    checkKey(key);
    this.checkOffset(offsetInBlock);
    const e = this.entries.get(key);
    if (!e) return -1;
    const n = Math.max(0, Math.min(target.length, e.size - offsetInBlock));
    if (e.data) { e.data.copy(target, 0, offsetInBlock, offsetInBlock + n); this.hit(e); return n; }
    if (n > this.nowaitMax) return -1;
    const dest = n === target.length ? target : target.subarray(0, n);
    if (n > 0 && !this.readSlotNoWait(e, dest, offsetInBlock, this.slotParts(e, dest, offsetInBlock))) return -1;
    this.hit(e);
    return n;
  }

  /**
   * Starts fetching `key` in the background unless it is cached, already being
   * fetched, or maxPrefetches are in flight. Resolves when that fetch is over;
   * never rejects (a failed prefetch is counted and forgotten).
   */
  prefetch(key: string, fetch: Fetcher): Promise<void> {
    checkKey(key);
    if (this.closed || this.entries.has(key) || this.inflight.has(key) || this.prefetchInFlight >= this.maxPrefetches) return Promise.resolve();
    this.c.prefetchIssued++;
    this.prefetchInFlight++;
    return this.fetchShared(key, fetch, true).then(
      () => {},
      (err: unknown) => { this.log.debug('prefetch failed', { key, err }); },
    ).finally(() => { this.prefetchInFlight--; });
  }

  has(key: string): boolean {
    return this.entries.has(key);
  }

  // ------------------------------------------------------------ writes and pins

  /**
   * Caches `data` as the block `key` (e.g. a block just written and uploaded).
   * Resolves true once it is in its slot, false when it was not cached (no
   * free slot, too many writes pending, write error). `data` must not change
   * until the promise settles.
   */
  async put(key: string, data: Buffer): Promise<boolean> {
    this.checkOpen();
    checkKey(key);
    this.checkBlock(key, data);
    if (this.entries.has(key)) return true;
    return this.insert(key, data, unitCrcs(data), false);
  }

  /**
   * Keeps `key` from being evicted (counted: every pin needs an unpin). May be
   * called before the key is cached. Pins live in memory only: after a
   * restart, whoever holds the dirty data (the write log) pins again.
   */
  pin(key: string): void {
    checkKey(key);
    this.pins.set(key, (this.pins.get(key) ?? 0) + 1);
    this.lru.delete(key);
  }

  unpin(key: string): void {
    const n = this.pins.get(key);
    if (n === undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `chunk cache key ${key} is not pinned`);
    if (n > 1) { this.pins.set(key, n - 1); return; }
    this.pins.delete(key);
    const e = this.entries.get(key);
    if (e) this.lru.set(key, e);
  }

  // ------------------------------------------------------------ status and lifecycle

  stats(): ChunkCacheStats {
    const c = this.c;
    const lookups = c.hits + c.misses;
    return {
      ...c,
      hitRatio: lookups === 0 ? 0 : c.hits / lookups,
      entries: this.entries.size,
      bytesCached: this.bytesCached,
      capacityBytes: this.slots * this.blockSize,
      slots: this.slots,
      pinnedKeys: this.pins.size,
      pendingWrites: this.pendingWrites,
      prefetchInFlight: this.prefetchInFlight,
    };
  }

  /** Waits for background slot writes, then persists last-use times and every index update. */
  async flush(): Promise<void> {
    await this.settleIo();
    this.persistLastUse();
    await this.indexIdle();
  }

  /** Finishes background writes, persists the index and closes. Fetches still running are not cached. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.closed = true;
      if (this.timer) clearInterval(this.timer);
      await this.flush();
      await this.db.close();
      await this.fh.close();
    })();
    return this.closing;
  }

  // ------------------------------------------------------------ internals: lookups

  private hit(e: Entry): void {
    this.c.hits++;
    e.lastUse = ++this.clock;
    this.touched.add(e);
    this.lru.get(e.key); // refreshes recency; no-op when pinned
    if (e.prefetched) { e.prefetched = false; this.c.prefetchUsed++; }
  }

  /**
   * Reads [off, off + dest.length) of a ready entry into `dest` after checking
   * the CRC of every unit it touches; false (entry dropped) on mismatch or I/O
   * error. Whole units are read straight into `dest`; a unit only partly
   * wanted (an unaligned edge) goes through a one-unit scratch buffer. Up to
   * nowaitMax bytes are first tried with RWF_NOWAIT: a page-cache hit is read
   * and checked synchronously (a boolean, no promise); otherwise the read
   * runs on the thread pool.
   */
  private readSlot(e: Entry, dest: Uint8Array, off: number): boolean | Promise<boolean> {
    if (dest.length === 0) return true;
    const parts = this.slotParts(e, dest, off);
    return this.readSlotNoWait(e, dest, off, parts) ?? this.readSlotPool(e, parts ?? [{ pos: off, buf: dest, scratch: false }], dest, off);
  }

  /**
   * How a slot read is split into whole units: undefined when [off, off +
   * dest.length) is unit-aligned (the common case: NBD clients send
   * page-aligned requests; no scratch, no array), else the parts: a scratch
   * unit for a partly wanted head and/or tail unit, `dest` itself between.
   */
  private slotParts(e: Entry, dest: Uint8Array, off: number): Part[] | undefined {
    const end = off + dest.length;
    const headCut = off % UNIT_BYTES !== 0;
    const tailCut = end % UNIT_BYTES !== 0 && end !== e.size; // a block's last unit may be short
    if (!headCut && !tailCut) return undefined;
    const parts: Part[] = [];
    let midStart = off;
    let midEnd = end;
    const head = off - (off % UNIT_BYTES);
    if (headCut) {
      parts.push(this.scratchUnit(e, head));
      midStart = head + UNIT_BYTES;
    }
    if (tailCut) {
      const tail = (end - 1) - ((end - 1) % UNIT_BYTES);
      if (!headCut || tail !== head) parts.push(this.scratchUnit(e, tail)); // else the head unit holds it all
      midEnd = tail;
    }
    if (midStart < midEnd) parts.push({ pos: midStart, buf: dest.subarray(midStart - off, midEnd - off), scratch: false });
    return parts;
  }

  /**
   * The RWF_NOWAIT attempt: true/false (read and checked: intact / entry
   * dropped) when every part came from the page cache at once, undefined
   * when the read needs the thread pool (nothing was started).
   */
  private readSlotNoWait(e: Entry, dest: Uint8Array, off: number, parts: Part[] | undefined): boolean | undefined {
    if (dest.length > this.nowaitMax) return undefined;
    const base = this.slotOffset(e.slot);
    if (!parts) {
      if (!this.readNoWait(dest, base + off)) return undefined;
      this.c.nowaitReads++;
      return this.check(e, dest, off);
    }
    for (const p of parts) if (!this.readNoWait(p.buf, base + p.pos)) return undefined;
    this.c.nowaitReads++;
    return this.checkParts(e, parts, dest, off);
  }

  private scratchUnit(e: Entry, pos: number): Part {
    return { pos, buf: Buffer.allocUnsafe(Math.min(UNIT_BYTES, e.size - pos)), scratch: true };
  }

  /**
   * The thread-pool path of readSlot: every part read and CRC-checked on the
   * pool by the native addon's preadVerify (the event loop does no checksum
   * work: a 512 KiB read costs it ~100 µs of CRC otherwise), or without the
   * addon read by pread and checked here.
   */
  private async readSlotPool(e: Entry, parts: Part[], dest: Uint8Array, off: number): Promise<boolean> {
    const base = this.slotOffset(e.slot);
    e.readers++;
    try {
      let intact: boolean;
      try {
        if (this.verifier) {
          const verifier = this.verifier;
          const verify = (p: Part): Promise<number> => verifier.read(p.buf, base + p.pos, e.crcs, p.pos / UNIT_BYTES);
          const bad = parts.length === 1 ? [await this.track(verify(parts[0]!))] : await this.track(allDone(parts.map(verify)));
          intact = bad.every((u) => u < 0);
        } else {
          await this.track<unknown>(parts.length === 1
            ? preadFull(this.fh, parts[0]!.buf, base + parts[0]!.pos)
            : allDone(parts.map((p) => preadFull(this.fh, p.buf, base + p.pos))));
          intact = parts.every((p) => unitsMatch(p.buf, e.crcs, p.pos / UNIT_BYTES));
        }
      } catch (err) {
        this.c.readErrors++;
        this.log.warn('cache slot read failed; dropping the entry', { key: e.key, slot: e.slot, err });
        this.drop(e);
        return false;
      }
      if (!intact) return this.checksumFailed(e);
      copyScratch(parts, dest, off);
      return true;
    } finally {
      e.readers--;
      if (e.gone && e.readers === 0) this.releaseSlot(e);
    }
  }

  /** Checks every part's units, then copies scratch parts into `dest` (which holds block bytes from `off`). */
  private checkParts(e: Entry, parts: Part[], dest: Uint8Array, off: number): boolean {
    for (const p of parts) if (!this.check(e, p.buf, p.pos)) return false;
    copyScratch(parts, dest, off);
    return true;
  }

  /** CRC check of whole units `buf` = block bytes from `pos` (unit-aligned); a mismatch drops the entry. */
  private check(e: Entry, buf: Uint8Array, pos: number): boolean {
    return unitsMatch(buf, e.crcs, pos / UNIT_BYTES) || this.checksumFailed(e);
  }

  private checksumFailed(e: Entry): false {
    this.c.checksumFailures++;
    this.log.warn('cache slot fails its checksum; dropping the entry', { key: e.key, slot: e.slot });
    this.drop(e);
    return false;
  }

  /**
   * One synchronous preadv2(RWF_NOWAIT): true when it copied all of `buf`
   * from the page cache. Anything else (EAGAIN, short, an error) is left to
   * the thread-pool path, which retries and reports errors; EOPNOTSUPP /
   * EINVAL (no RWF_NOWAIT here) turn the attempt off for good.
   */
  private readNoWait(buf: Uint8Array, position: number): boolean {
    try {
      return native.preadNoWait(this.fd, buf as Buffer, 0, buf.length, position) === buf.length;
    } catch (err) {
      if (native.hasErrorCode(err, ...native.UNSUPPORTED_CODES, 'EINVAL')) {
        this.nowaitMax = 0;
        this.log.debug('RWF_NOWAIT reads not supported here; slot reads use the thread pool', { err: err as Error });
      }
      return false;
    }
  }

  private fetchShared(key: string, fetch: Fetcher, prefetch: boolean): Promise<Buffer> {
    const existing = this.inflight.get(key);
    if (existing) {
      if (!prefetch && existing.unclaimedPrefetch) { existing.unclaimedPrefetch = false; this.c.prefetchUsed++; }
      return existing.promise;
    }
    this.c.fetches++;
    // In the map before fetch() runs, so a fetch that fails synchronously still clears it.
    const flight = { unclaimedPrefetch: prefetch } as Flight;
    this.inflight.set(key, flight);
    flight.promise = this.runFetch(key, fetch, flight);
    return flight.promise;
  }

  private async runFetch(key: string, fetch: Fetcher, flight: Flight): Promise<Buffer> {
    try {
      const data = await fetch();
      this.checkBlock(key, data);
      const prefetched = flight.unclaimedPrefetch;
      void this.insert(key, data, unitCrcs(data), prefetched).then((cached) => {
        if (!cached && prefetched) this.c.prefetchWasted++;
      });
      return data;
    } catch (err) {
      this.c.fetchErrors++;
      if (flight.unclaimedPrefetch) this.c.prefetchWasted++;
      throw err;
    } finally {
      if (this.inflight.get(key) === flight) this.inflight.delete(key);
    }
  }

  // ------------------------------------------------------------ internals: slots

  /** Takes a slot and writes the block into it in the background. Never rejects. */
  private insert(key: string, data: Buffer, crcs: Uint32Array, prefetched: boolean): Promise<boolean> {
    if (this.closed || this.entries.has(key)) return Promise.resolve(false);
    const taken = this.pendingWrites < this.maxPendingWrites ? this.takeSlot() : undefined;
    if (taken === undefined) { this.c.insertsSkipped++; return Promise.resolve(false); }
    const { slot, evicted } = taken;
    const e: Entry = {
      key, slot, size: data.length, crcs, lastUse: ++this.clock, persistedUse: NaN,
      data, readers: 0, gone: false, prefetched,
    };
    this.entries.set(key, e);
    if (!this.pins.has(key)) this.lru.set(key, e);
    this.bytesCached += e.size;
    this.pendingWrites++;
    return this.track(this.writeSlot(e, data, evicted));
  }

  /** `evicted`: the index delete of the slot's previous entry, which must land first. */
  private async writeSlot(e: Entry, data: Buffer, evicted: Promise<void> | undefined): Promise<boolean> {
    try {
      // A kill between the two leaves the old entry naming a slot that no
      // longer holds it; waiting keeps that to power loss (caught by the CRC).
      if (evicted) await evicted;
      await pwriteFull(this.fh, data, this.slotOffset(e.slot));
    } catch (err) {
      this.c.writeErrors++;
      this.log.warn('cache slot write failed; block not cached', { key: e.key, slot: e.slot, err });
      this.drop(e);
      return false;
    } finally {
      this.pendingWrites--;
    }
    e.data = undefined;
    if (e.gone) return false; // dropped meanwhile (cannot happen today; kept safe)
    this.persist(e);
    return true;
  }

  /**
   * A free slot, or the slot of the least recently used evictable entry (with
   * the promise of its index delete), or undefined.
   */
  private takeSlot(): { slot: number; evicted?: Promise<void> } | undefined {
    const free = this.freeSlots.pop();
    if (free !== undefined) return { slot: free };
    if (this.nextFresh < this.slots) return { slot: this.nextFresh++ };
    for (const key of this.lru.rkeys()) { // least recently used first; bounded by lru.size
      const victim = this.lru.peek(key)!;
      if (victim.readers > 0 || victim.data) continue; // being read or still being written
      this.lru.delete(key);
      this.entries.delete(key);
      this.bytesCached -= victim.size;
      victim.gone = true;
      this.c.evictions++;
      if (victim.prefetched) this.c.prefetchWasted++;
      return { slot: victim.slot, evicted: this.queueIndex({ type: 'del', key: ENTRY_PREFIX + key }) }; // handed straight to the new entry
    }
    return undefined;
  }

  /** Removes an entry (damaged slot, failed write); its slot is freed once no reader uses it. */
  private drop(e: Entry): void {
    if (e.gone) return;
    e.gone = true;
    this.entries.delete(e.key);
    this.lru.delete(e.key);
    this.bytesCached -= e.size;
    void this.queueIndex({ type: 'del', key: ENTRY_PREFIX + e.key });
    if (e.readers === 0) this.releaseSlot(e);
  }

  private releaseSlot(e: Entry): void {
    this.freeSlots.push(e.slot);
  }

  private slotOffset(slot: number): number {
    return HEADER_BYTES + slot * this.blockSize;
  }

  // ------------------------------------------------------------ internals: index

  private persist(e: Entry): void {
    e.persistedUse = e.lastUse;
    void this.queueIndex({ type: 'put', key: ENTRY_PREFIX + e.key, value: encodeEntry(e) });
  }

  private persistLastUse(): void {
    for (const e of this.touched) {
      if (!e.gone && !e.data && e.lastUse !== e.persistedUse) this.persist(e);
    }
    this.touched.clear();
  }

  /**
   * Index updates are applied in order, in batches (group commit), one batch
   * at a time. Resolves when `op` has been handed to LevelDB (in the OS, so it
   * survives a process kill) or has failed (logged; never rejects).
   */
  private queueIndex(op: IndexOp): Promise<void> {
    if (!this.nextBatch) {
      let resolve!: () => void;
      const applied = new Promise<void>((res) => { resolve = res; });
      this.nextBatch = { ops: [], applied, resolve };
    }
    const { ops, applied } = this.nextBatch;
    ops.push(op);
    this.indexDrain ??= this.drainIndex(); // takes nextBatch synchronously
    return applied;
  }

  private async drainIndex(): Promise<void> {
    try {
      while (this.nextBatch) { // each pass takes what is queued; ends when producers stop
        const { ops, resolve } = this.nextBatch;
        this.nextBatch = undefined;
        for (let i = 0; i < ops.length; i += MAX_INDEX_BATCH) {
          const chunk = ops.slice(i, i + MAX_INDEX_BATCH);
          try {
            await this.db.batch(chunk);
          } catch (err) {
            // Lost index updates cost warmth after a restart, never correctness (CRCs).
            this.c.indexErrors++;
            this.log.warn('cache index update failed', { ops: chunk.length, err });
          }
        }
        resolve();
      }
    } finally {
      this.indexDrain = undefined;
    }
  }

  private async indexIdle(): Promise<void> {
    while (this.indexDrain) await this.indexDrain;
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.io.add(p);
    void p.finally(() => this.io.delete(p)).catch(() => {});
    return p;
  }

  private async settleIo(): Promise<void> {
    // Each pass waits for the I/O started so far; I/O started meanwhile (a read
    // that had passed checkOpen) is bounded by the callers in flight.
    while (this.io.size > 0) await Promise.allSettled([...this.io]);
  }

  // ------------------------------------------------------------ internals: open

  private async load(): Promise<void> {
    const head = Buffer.alloc(HEADER_USED);
    const { bytesRead } = await this.fh.read(head, 0, HEADER_USED, 0);
    const meta = await this.db.get(META_KEY);
    if (bytesRead === 0 && meta === undefined) return this.reset('new cache', false);
    const header = decodeHeader(head.subarray(0, bytesRead));
    if (typeof header === 'string') {
      const version = headerVersion(head.subarray(0, bytesRead));
      if (version !== undefined && version !== CACHE_FORMAT_VERSION) {
        return this.reset(`the cache was written in format version ${version}; this blockgate uses version ${CACHE_FORMAT_VERSION} ` +
          `(${UNIT_BYTES}-byte checksum units) and does not convert old caches: its blocks are dropped and fetched again from the store on use`, true);
      }
      return this.reset(`slot file: ${header}`, true);
    }
    if (meta === undefined) return this.reset('index has no header', true);
    if (!head.equals(meta)) return this.reset('index and slot file belong to different caches', true);
    if (header.blockSize !== this.blockSize) return this.reset(`block size changed from ${header.blockSize} to ${this.blockSize}`, true);

    await this.fh.truncate(this.slotOffset(this.slots)); // grows sparse, or drops slots beyond a smaller cap
    const loaded: Entry[] = [];
    const bad: string[] = [];
    const claimed = new Map<number, Entry>();
    const contested = new Set<number>();
    for await (const [k, v] of this.db.iterator({ gte: ENTRY_PREFIX, lt: ENTRY_END })) {
      const key = k.slice(ENTRY_PREFIX.length);
      const r = decodeEntry(v);
      if (!r || key.length === 0 || key.length > MAX_KEY_LENGTH || r.slot >= this.slots || r.size > this.blockSize) { bad.push(k); continue; }
      const e: Entry = { key, ...r, persistedUse: r.lastUse, data: undefined, readers: 0, gone: false, prefetched: false };
      if (claimed.has(r.slot)) contested.add(r.slot); else claimed.set(r.slot, e);
      loaded.push(e);
    }
    // Two records naming one slot: at most one matches its content; trust neither.
    const kept = loaded.filter((e) => {
      if (!contested.has(e.slot)) return true;
      bad.push(ENTRY_PREFIX + e.key);
      return false;
    });
    kept.sort((a, b) => a.lastUse - b.lastUse);
    this.nextFresh = kept.reduce((m, e) => Math.max(m, e.slot + 1), 0);
    const used = new Uint8Array(this.nextFresh);
    for (const e of kept) { // oldest first, so the most recently used ends up most recent in the LRU
      this.entries.set(e.key, e);
      this.lru.set(e.key, e);
      this.bytesCached += e.size;
      used[e.slot] = 1;
      this.clock = Math.max(this.clock, e.lastUse);
    }
    for (let s = this.nextFresh - 1; s >= 0; s--) if (!used[s]) this.freeSlots.push(s);
    if (bad.length > 0) await this.db.batch(bad.map((key) => ({ type: 'del' as const, key })));
    this.log.info('chunk cache opened', { entries: kept.length, dropped: bad.length, slots: this.slots, blockSize: this.blockSize });
  }

  /**
   * Starts empty. Order matters for a kill at any point: the old index is
   * cleared, then the slot file gets a header with a new instance id (synced),
   * and only then the index gets the matching header; until that last step the
   * two disagree and the next open resets again.
   */
  private async reset(reason: string, warn: boolean): Promise<void> {
    if (warn) { this.c.resets++; this.log.warn('chunk cache reset: starting empty (cold), previous contents not used', { reason }); }
    await this.db.clear();
    await this.fh.truncate(0);
    const header = encodeHeader(this.blockSize, randomBytes(16));
    await pwriteFull(this.fh, header, 0);
    await this.fh.truncate(this.slotOffset(this.slots));
    await this.fh.datasync();
    await this.db.put(META_KEY, header, { sync: true });
    this.log.info('chunk cache created', { slots: this.slots, blockSize: this.blockSize });
  }

  private checkOffset(offsetInBlock: number): void {
    if (!Number.isSafeInteger(offsetInBlock) || offsetInBlock < 0 || offsetInBlock > this.blockSize) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `offset ${offsetInBlock} is outside a ${this.blockSize}-byte block`);
    }
  }

  private checkOpen(): void {
    if (this.closed) throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `chunk cache ${this.dir} is closed`);
  }

  private checkBlock(key: string, data: unknown): asserts data is Buffer {
    if (!Buffer.isBuffer(data) || data.length > this.blockSize) {
      const what = Buffer.isBuffer(data) ? `${data.length} bytes` : typeof data;
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `block ${key}: got ${what}, expected a Buffer of at most the block size (${this.blockSize})`);
    }
  }
}

/** Copies the scratch parts' wanted bytes into `dest`, which holds block bytes from `off`. */
function copyScratch(parts: Part[], dest: Uint8Array, off: number): void {
  const end = off + dest.length;
  for (const p of parts) {
    if (!p.scratch) continue;
    const from = Math.max(off, p.pos);
    const to = Math.min(end, p.pos + p.buf.length);
    dest.set(p.buf.subarray(from - p.pos, to - p.pos), from - off);
  }
}

function checkKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `chunk cache key must be a non-empty string of at most ${MAX_KEY_LENGTH} characters`);
  }
}

/** Opens the LevelDB index; a corrupt one is deleted and recreated (it is only a cache). */
async function openIndex(location: string, log: Logger): Promise<Level<string, Buffer>> {
  for (let attempt = 0; ; attempt++) {
    const db = new Level<string, Buffer>(location, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
    try {
      await db.open();
      return db;
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED') {
        throw new BlockgateError(ErrorCodes.IO, `chunk cache index ${location} is in use by another chunk cache (another process, or this one opened twice)`, { cause: err });
      }
      if (attempt > 0) throw new BlockgateError(ErrorCodes.IO, `cannot open chunk cache index ${location}: ${(cause as Error | undefined)?.message ?? (err as Error).message}`, { cause: err });
      log.warn('chunk cache index cannot be opened; recreating it', { err: (cause as Error | undefined) ?? err });
      await rm(location, { recursive: true, force: true });
    }
  }
}

async function preadFull(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buf.length;) { // each pass advances or throws
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new BlockgateError(ErrorCodes.IO, `short read at ${position + done} in the cache slot file`);
    done += bytesRead;
  }
}

async function pwriteFull(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  for (let done = 0; done < buf.length;) { // each pass advances or throws
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, position + done);
    if (bytesWritten === 0) throw new BlockgateError(ErrorCodes.IO, `short write at ${position + done} in the cache slot file`);
    done += bytesWritten;
  }
}
