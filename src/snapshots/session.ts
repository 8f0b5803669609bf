// UploadSession: one snapshot being written (EBS StartSnapshot → PutSnapshotBlock
// → CompleteSnapshot). States: opening → open → completing → completed | aborted.
//
// Protocol with GC (see gc.ts and docs/formats/snapshot.md#gc):
//   1. open(): put sessions/<id>.json (start marker: volume, parent) and
//      sessions/<id>.alive; HEAD the marker for the server's start time. GC
//      never sweeps objects newer than an active session's start, and pins the
//      session's parent (even if it is deleted meanwhile).
//   2. putBlock(): objects written now are newer than the start marker, so
//      they survive any GC. A block that already existed ("reused", older than
//      the marker) is remembered.
//   3. complete(): writes shards, then sessions/<id>.pending.json (the would-be
//      root; GC marks from it), then checks gc/runs/ for runs overlapping the
//      session; if any, waits for them to end and re-checks that every reused
//      object still exists (missing shards are rewritten; a missing reused
//      block fails the session, retryably). Only then the root is put with
//      ifNoneMatch '*', and the session markers are removed.
// Invariants: nothing is visible before the root put; the root references only
// objects that exist; putBlock memory is O(changed blocks) (one map entry per
// index) and store concurrency is bounded by a semaphore.

import { createHash } from 'node:crypto';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../errors.js';
import { Semaphore, mapBounded, sleep } from './bounded.js';
import { encodePayload } from './codec.js';
import {
  BLOCK_HEADER, blockCount, blockHashFromDigest, encodeBlockObject, encodeRoot, encodeShard, isZero, keys, newSnapshotId, prefixes, sha256,
  type LineageStats, type ShardEntries, type ShardRef, type SnapshotRoot,
} from './format.js';
import { sha256Async } from '../util/sha256.js';
import type { Family, SnapshotStore } from './snapshot-store.js';

export interface StartOptions {
  /** Volume (family) name; defaults to the parent's. */
  volume?: string;
  /** Volume size in bytes; defaults to the parent's. */
  size?: number;
  /** Block size; must equal the family's (default 512 KiB for a new family). */
  blockSize?: number;
  /** Parent snapshot id: blocks not put are inherited from it. */
  parent?: string | undefined;
  description?: string;
}

const HEAD_MISS_LIMIT = 64;

type SessionState = 'opening' | 'open' | 'completing' | 'completed' | 'aborted';

interface Change {
  /** Block hash, null for zeros. */
  hash: string | null;
  /** SHA-256 of the block data as the caller gave it. */
  digest: Buffer;
}

export interface GcRunRecord {
  id: string;
  startedAt: string;
  endedAt?: string;
  pid?: number;
}

export class UploadSession {
  readonly id: string;
  readonly volume: string;
  readonly size: number;
  readonly blockSize: number;
  readonly blockCount: number;
  private state: SessionState = 'opening';
  private readonly changes = new Map<number, Change>();
  /** Hashes stored (or confirmed fresh) by this session; value settles when durable. */
  private readonly puts = new Map<string, Promise<void>>();
  /** Hashes found already present and older than this session. */
  private readonly reused = new Set<string>();
  private readonly limiter: Semaphore;
  /**
   * Block object bodies whose put has completed, for reuse (one 512 KiB
   * allocation per block costs page faults and GC work). At most one per
   * limiter slot is ever outstanding, so the list stays that short.
   */
  private readonly spareBodies: Buffer[] = [];
  private inflight = 0;
  /**
   * Whether to HEAD a block before putting it (saves re-sending blocks that
   * exist, e.g. after an interrupted upload). Off for a family created by
   * this process (nothing can exist), and switched off after
   * HEAD_MISS_LIMIT consecutive misses (the put is put-if-absent anyway, so
   * an existing block is still detected, only its bytes are re-sent).
   */
  private probeExisting: boolean;
  private headMisses = 0;
  private serverStart = new Date(0);
  private lastHeartbeat = Date.now();
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private readonly stats = { uploadedBytes: 0, storedBytes: 0, uploadedBlocks: 0, reusedBlocks: 0 };

  constructor(
    private readonly snaps: SnapshotStore,
    readonly family: Family,
    private readonly opts: StartOptions & { volume: string; size: number; blockSize: number },
    readonly parent: SnapshotRoot | null,
  ) {
    this.id = newSnapshotId();
    this.volume = opts.volume;
    this.size = opts.size;
    this.blockSize = opts.blockSize;
    this.blockCount = blockCount(opts.size, opts.blockSize);
    this.limiter = new Semaphore(snaps.options.concurrency);
    this.probeExisting = !snaps.isNewFamily(opts.volume);
  }

  get status(): SessionState { return this.state; }
  get changedCount(): number { return this.changes.size; }
  get counters(): Readonly<{ uploadedBytes: number; storedBytes: number; uploadedBlocks: number; reusedBlocks: number }> { return this.stats; }

  /** @internal called by SnapshotStore.start */
  async open(): Promise<void> {
    const store = this.snaps.store;
    const marker = { id: this.id, volume: this.volume, parent: this.parent?.id ?? null, size: this.size, startedAt: new Date().toISOString(), pid: process.pid };
    await store.put(keys.session(this.id), Buffer.from(JSON.stringify(marker)), { ifNoneMatch: '*' });
    await store.put(keys.sessionAlive(this.id), Buffer.alloc(0));
    this.serverStart = (await store.head(keys.session(this.id))).lastModified;
    this.lastHeartbeat = Date.now();
    this.heartbeatTimer = setInterval(() => { void this.heartbeat(); }, this.snaps.options.heartbeatMs);
    this.heartbeatTimer.unref();
    this.state = 'open';
    this.snaps.log.debug('snapshot session open', { snapshot: this.id, volume: this.volume, parent: this.parent?.id ?? null });
  }

  private async heartbeat(): Promise<Date | undefined> {
    try {
      await this.snaps.store.put(keys.sessionAlive(this.id), Buffer.alloc(0));
      this.lastHeartbeat = Date.now();
      return (await this.snaps.store.head(keys.sessionAlive(this.id))).lastModified;
    } catch (err) {
      this.snaps.log.warn('snapshot session heartbeat failed', { snapshot: this.id, err });
      return undefined;
    }
  }

  /** Block hash of the parent at `index` (null = zero or no parent). */
  async parentBlockHash(index: number): Promise<string | null> {
    return this.parent ? this.snaps.blockHashAt(this.parent, index) : null;
  }

  /** Content address this session would give `data` (padded to a full block). */
  hashOf(data: Buffer, digest?: Buffer): string {
    const full = this.pad(data);
    const d = full === data && digest ? digest : sha256(full);
    return blockHashFromDigest(this.family.key, d);
  }

  /**
   * EBS PutSnapshotBlock. `checksum` is the base64 SHA-256 of `data`; data is
   * one block (the last block may be short). All-zero data records a zero
   * block (overriding the parent) and stores nothing.
   */
  async putBlock(index: number, data: Buffer, checksum: string): Promise<void> {
    const digest = await sha256Async(data);
    if (digest.toString('base64') !== checksum) {
      throw new BlockgateError(ErrorCodes.CHECKSUM_MISMATCH, `snapshot ${this.id} block ${index}: data does not match the checksum given with it`, { details: { snapshot: this.id, index } });
    }
    return this.putBlockWithDigest(index, data, digest);
  }

  /** putBlock for callers that computed `digest` = SHA-256(data) themselves from this very buffer. */
  async putBlockWithDigest(index: number, data: Buffer, digest: Buffer): Promise<void> {
    this.assertState('open');
    if (!Number.isSafeInteger(index) || index < 0 || index >= this.blockCount) {
      throw new BlockgateError(ErrorCodes.OUT_OF_RANGE, `snapshot ${this.id} has blocks 0..${this.blockCount - 1}; block ${index} is out of range`);
    }
    const expected = Math.min(this.blockSize, this.size - index * this.blockSize);
    if (data.length !== expected && !(data.length === this.blockSize && index === this.blockCount - 1)) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `snapshot ${this.id} block ${index}: expected ${expected} bytes, got ${data.length}`);
    }
    this.inflight++;
    try {
      if (isZero(data)) {
        this.changes.set(index, { hash: null, digest });
        return;
      }
      const full = this.pad(data);
      const hash = blockHashFromDigest(this.family.key, full === data ? digest : await sha256Async(full));
      let pending = this.puts.get(hash);
      if (!pending) {
        pending = this.storeBlock(hash, full);
        this.puts.set(hash, pending);
        pending.catch(() => this.puts.delete(hash));
      }
      await pending;
      this.changes.set(index, { hash, digest });
    } finally {
      this.inflight--;
    }
  }

  private pad(data: Buffer): Buffer {
    if (data.length === this.blockSize) return data;
    const full = Buffer.alloc(this.blockSize);
    data.copy(full);
    return full;
  }

  private async storeBlock(hash: string, plain: Buffer): Promise<void> {
    const store = this.snaps.store;
    const key = keys.block(hash);
    await this.limiter.run(async () => {
      if (this.probeExisting) {
        try {
          const info = await store.head(key);
          if (info.lastModified.getTime() < this.serverStart.getTime()) this.reused.add(hash);
          this.stats.reusedBlocks++;
          this.headMisses = 0;
          return;
        } catch (err) {
          if (!isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw err;
          if (++this.headMisses >= HEAD_MISS_LIMIT) this.probeExisting = false;
        }
      }
      const { codec, payload } = await encodePayload(plain, this.snaps.options.compression);
      const buffer = this.spareBodies.pop() ?? Buffer.allocUnsafe(BLOCK_HEADER + this.blockSize);
      const body = encodeBlockObject(codec, plain.length, payload, buffer);
      try {
        await store.put(key, body, { ifNoneMatch: '*' });
        this.spareBodies.push(buffer); // the store is done with it once put() has succeeded
        this.stats.uploadedBytes += plain.length;
        this.stats.storedBytes += body.length;
        this.stats.uploadedBlocks++;
      } catch (err) {
        // Not recycled on failure: a request that failed early may still be sending it.
        if (!isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) throw err;
        // Already there: stored by a concurrent writer, or older (then it is "reused").
        this.stats.reusedBlocks++;
        try {
          const info = await store.head(key);
          if (info.lastModified.getTime() < this.serverStart.getTime()) this.reused.add(hash);
        } catch (err2) {
          if (!isBlockgateError(err2, ErrorCodes.OBJECT_NOT_FOUND)) throw err2;
          this.reused.add(hash); // vanished right after the 412: let complete() re-check
        }
      }
    });
  }

  /**
   * EBS CompleteSnapshot. `changedCount` must equal the number of distinct
   * indexes put; `aggregateChecksum` is base64 SHA-256 over the concatenated
   * raw SHA-256 digests of those blocks in ascending index order (EBS LINEAR).
   */
  async complete(changedCount: number, aggregateChecksum: string): Promise<SnapshotRoot> {
    this.assertState('open');
    if (this.inflight > 0) throw new BlockgateError(ErrorCodes.SNAPSHOT_STATE, `snapshot ${this.id}: complete() called while ${this.inflight} putBlock call(s) are still running`);
    const indexes = [...this.changes.keys()].sort((a, b) => a - b);
    if (changedCount !== indexes.length) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `snapshot ${this.id}: changed block count ${changedCount} does not match the ${indexes.length} block(s) put`);
    }
    const agg = aggregateOf(indexes.map((i) => this.changes.get(i)!.digest));
    if (agg !== aggregateChecksum) {
      throw new BlockgateError(ErrorCodes.CHECKSUM_MISMATCH, `snapshot ${this.id}: aggregate checksum ${aggregateChecksum} does not match the blocks put (${agg})`);
    }
    this.state = 'completing';
    try {
      const root = await this.commit(indexes);
      this.state = 'completed';
      return root;
    } catch (err) {
      this.state = 'open'; // the caller may retry complete() or abort()
      throw err;
    }
  }

  private async commit(indexes: number[]): Promise<SnapshotRoot> {
    const store = this.snaps.store;
    const shardBlocks = this.family.shardBlocks;
    const nShards = Math.ceil(this.blockCount / shardBlocks);
    const shards: Array<ShardRef | null> = [];
    for (let s = 0; s < nShards; s++) shards.push(this.parent?.shards[s] ?? null);

    // Shards touched by a change, plus the last shard when the volume shrank.
    const dirty = new Map<number, number[]>();
    for (const i of indexes) {
      const s = Math.floor(i / shardBlocks);
      let list = dirty.get(s);
      if (!list) dirty.set(s, list = []);
      list.push(i);
    }
    if (this.parent && this.blockCount < blockCount(this.parent.size, this.parent.blockSize) && nShards > 0 && !dirty.has(nShards - 1)) {
      dirty.set(nShards - 1, []);
    }

    let newBlocks = 0;
    const newShardBodies = new Map<string, Buffer>();
    const reusedShards = new Set<string>();
    await mapBounded([...dirty.keys()].sort((a, b) => a - b), 4, async (s) => {
      const base = shards[s];
      const parentEntries: ShardEntries = base ? await this.snaps.readShard(base.k, () => `snapshot ${this.parent?.id} shard ${s}`) : new Map();
      const entries: ShardEntries = new Map(parentEntries);
      for (const i of dirty.get(s)!) {
        const off = i - s * shardBlocks;
        const h = this.changes.get(i)!.hash;
        if (h === null) entries.delete(off); else entries.set(off, h);
        if (h !== null && parentEntries.get(off) !== h) newBlocks++;
      }
      for (const off of [...entries.keys()]) if (s * shardBlocks + off >= this.blockCount) entries.delete(off);
      if (entries.size === 0) { shards[s] = null; return; }
      const body = encodeShard(shardBlocks, entries);
      const hash = sha256(body).toString('hex');
      shards[s] = { k: hash, n: entries.size };
      if (hash === base?.k) return;
      newShardBodies.set(hash, body);
      await this.limiter.run(async () => {
        try {
          await store.put(keys.shard(hash), body, { ifNoneMatch: '*' });
        } catch (err) {
          if (!isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) throw err;
          reusedShards.add(hash);
        }
      });
    });

    let blocks = 0;
    for (const ref of shards) blocks += ref?.n ?? 0;
    if (!this.parent) newBlocks = blocks;
    const stats: LineageStats = { blocks, newBlocks, uploadedBytes: this.stats.uploadedBytes, storedBytes: this.stats.storedBytes };
    const root: SnapshotRoot = {
      format: 'blockgate-snapshot', version: 1, id: this.id, volume: this.volume, parent: this.parent?.id ?? null,
      blockSize: this.blockSize, size: this.size, shardBlocks, createdAt: new Date().toISOString(), encryption: null,
      changedBlocks: indexes.length, aggregateChecksum: aggregateOf(indexes.map((i) => this.changes.get(i)!.digest)),
      stats, ...(this.opts.description ? { description: this.opts.description } : {}), shards,
    };
    const rootBody = encodeRoot(root);

    // Publish the would-be root for GC, then make sure no GC run removed what we reuse.
    await store.put(keys.sessionPending(this.id), rootBody);
    await this.settleWithGc(newShardBodies, reusedShards);

    try {
      await store.put(keys.root(this.id), rootBody, { ifNoneMatch: '*' });
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) {
        throw new BlockgateError(ErrorCodes.SNAPSHOT_STATE, `snapshot ${this.id} already exists`);
      }
      throw err;
    }
    await this.cleanup();
    this.snaps.log.info('snapshot complete', { snapshot: this.id, volume: this.volume, changed: indexes.length, uploadedBytes: this.stats.uploadedBytes });
    return JSON.parse(rootBody.toString('utf8')) as SnapshotRoot;
  }

  /** Waits out GC runs that overlapped this session and re-checks reused objects. */
  private async settleWithGc(newShards: Map<string, Buffer>, reusedShards: Set<string>): Promise<void> {
    const store = this.snaps.store;
    const { staleMs, gcPollMs, gcWaitTimeoutMs } = this.snaps.options;
    const lapsed = Date.now() - this.lastHeartbeat > staleMs / 2;
    const serverNow = (await this.heartbeat()) ?? new Date();
    const deadline = Date.now() + gcWaitTimeoutMs;
    let overlapped = lapsed;
    for (;;) {
      let running = 0;
      for await (const info of store.list(prefixes.gcRuns)) {
        let rec: GcRunRecord;
        try { rec = JSON.parse((await store.get(info.key)).body.toString('utf8')) as GcRunRecord; } catch { continue; }
        const ended = rec.endedAt !== undefined;
        if (!ended && info.lastModified.getTime() >= serverNow.getTime() - staleMs) { running++; overlapped = true; }
        else if (ended && info.lastModified.getTime() >= this.serverStart.getTime()) overlapped = true;
      }
      if (running === 0) break;
      if (Date.now() > deadline) {
        throw new BlockgateError(ErrorCodes.STORE_TIMEOUT, `snapshot ${this.id}: a garbage collection has been running for too long; retry complete()`, { retryable: true });
      }
      await sleep(gcPollMs);
    }
    if (!overlapped) return;
    this.snaps.log.info('snapshot session overlapped a gc run; re-checking reused objects', { snapshot: this.id, blocks: this.reused.size, shards: reusedShards.size });
    const missingBlocks: string[] = [];
    await mapBounded([...this.reused], this.snaps.options.concurrency, async (hash) => {
      if (!(await this.exists(keys.block(hash)))) missingBlocks.push(hash);
    });
    await mapBounded([...newShards.keys()], 4, async (hash) => {
      if (!(await this.exists(keys.shard(hash)))) await store.put(keys.shard(hash), newShards.get(hash)!);
    });
    if (missingBlocks.length > 0) {
      for (const h of missingBlocks) { this.reused.delete(h); this.puts.delete(h); }
      throw new BlockgateError(ErrorCodes.SNAPSHOT_STATE,
        `snapshot ${this.id}: a concurrent garbage collection removed ${missingBlocks.length} block(s) this upload reused; upload again`,
        { retryable: true, details: { snapshot: this.id, missing: missingBlocks.length } });
    }
  }

  /** Abandons the session: removes its markers; objects already written are left for GC. */
  async abort(): Promise<void> {
    if (this.state === 'completed' || this.state === 'aborted') return;
    this.state = 'aborted';
    await this.cleanup();
  }

  private async cleanup(): Promise<void> {
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
    for (const key of [keys.sessionPending(this.id), keys.sessionAlive(this.id), keys.session(this.id)]) {
      try { await this.snaps.store.delete(key); } catch (err) {
        this.snaps.log.warn('could not remove session marker (gc will)', { key, err });
      }
    }
  }

  private async exists(key: string): Promise<boolean> {
    try {
      await this.snaps.store.head(key);
      return true;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) return false;
      throw err;
    }
  }

  private assertState(want: SessionState): void {
    if (this.state !== want) throw new BlockgateError(ErrorCodes.SNAPSHOT_STATE, `snapshot ${this.id} is ${this.state}, not ${want}`);
  }
}

/** EBS LINEAR aggregate: base64 SHA-256 over the concatenated raw block digests in index order. */
export function aggregateOf(digests: Iterable<Buffer>): string {
  const h = createHash('sha256');
  for (const d of digests) h.update(d);
  return h.digest('base64');
}
