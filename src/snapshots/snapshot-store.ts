// SnapshotStore: the snapshot API over an ObjectStore (EBS direct API shape).
// Read side: getRoot/list/getBlock/listBlocks/listChangedBlocks; write side:
// start() → UploadSession (session.ts); delete() moves a root to trash/.
//
// States of a snapshot id: absent → (session open: sessions/<id>.* exist,
// objects being written, nothing visible) → visible (snapshots/<id>.json) →
// deleted (trash/<id>.json until GC expires it).
// Invariants:
//   - a snapshot is visible iff its root exists; roots are put-if-absent and
//     never rewritten, so a visible snapshot is immutable;
//   - every object a visible root references existed before the root was put
//     (GC cooperates through session markers; see gc.ts and session.ts);
//   - every read is verified: root digest, shard SHA-256, block CRC + keyed
//     hash; a mismatch is ERR_CHECKSUM_MISMATCH naming snapshot and block index;
//   - caches hold only immutable objects (roots, shards, families), bounded.

import { randomBytes } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { decodePayload, type CompressionMode } from './codec.js';
import { mapBounded } from './bounded.js';
import {
  DEFAULT_BLOCK_SIZE, DEFAULT_SHARD_BLOCKS, FORMAT_VERSION, SNAPSHOT_ID_RE,
  blockCount, blockHashFromDigest, decodeBlockObject, decodeRoot, decodeShard, keys, parseFamily, prefixes,
  validateBlockSize, validateVolumeName,
  type FamilyObject, type ShardEntries, type SnapshotRoot,
} from './format.js';
import { sha256Async } from '../util/sha256.js';
import { UploadSession, type StartOptions } from './session.js';

export interface SnapshotStoreOptions {
  logger?: Logger;
  /** Block compression for new uploads (default lz4). */
  compression?: CompressionMode;
  /** Concurrent object-store requests per upload session / download (default 16). */
  concurrency?: number;
  /** Session heartbeat period (default 60 s). */
  heartbeatMs?: number;
  /** A session or GC run whose heartbeat is older than this is dead (default 10 min). */
  staleMs?: number;
  /** How long complete() waits for a running GC before giving up (default 30 min). */
  gcWaitTimeoutMs?: number;
  /** Poll interval while waiting for a GC run to end (default 1 s). */
  gcPollMs?: number;
}

export interface Family {
  readonly volume: string;
  readonly blockSize: number;
  readonly shardBlocks: number;
  readonly key: Buffer;
}

export interface BlockData {
  /** Block plaintext; the last block of a volume is truncated at the volume's size. */
  data: Buffer;
  /** SHA-256 (base64) of `data`. */
  checksum: string;
  /** True when the snapshot has no stored block here (all zeros). */
  zero: boolean;
  /** Block hash (content address) or null for zero. */
  hash: string | null;
}

export interface ChangedBlock {
  index: number;
  /** Block hash in the first snapshot (null = zero). */
  first: string | null;
  /** Block hash in the second snapshot (null = zero). */
  second: string | null;
}

export class SnapshotStore {
  readonly log: Logger;
  readonly options: Required<Omit<SnapshotStoreOptions, 'logger'>>;
  private readonly families = new Map<string, Family>();
  /** Families this instance created: their key is new, so no block of theirs can exist yet. */
  private readonly createdFamilies = new Set<string>();
  private readonly roots = new LRUCache<string, SnapshotRoot>({ max: 256 });
  private readonly shards = new LRUCache<string, ShardEntries>({ max: 64 });

  constructor(readonly store: ObjectStore, options: SnapshotStoreOptions = {}) {
    this.log = options.logger ?? silentLogger;
    this.options = {
      compression: options.compression ?? 'lz4',
      concurrency: options.concurrency ?? 16,
      heartbeatMs: options.heartbeatMs ?? 60_000,
      staleMs: options.staleMs ?? 10 * 60_000,
      gcWaitTimeoutMs: options.gcWaitTimeoutMs ?? 30 * 60_000,
      gcPollMs: options.gcPollMs ?? 1000,
    };
  }

  // ------------------------------------------------------------ families

  async getFamily(volume: string): Promise<Family | undefined> {
    const cached = this.families.get(volume);
    if (cached) return cached;
    validateVolumeName(volume);
    let body: Buffer;
    try {
      body = (await this.store.get(keys.family(volume))).body;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) return undefined;
      throw err;
    }
    const f = parseFamily(body, keys.family(volume));
    const fam: Family = { volume: f.volume, blockSize: f.blockSize, shardBlocks: f.shardBlocks, key: Buffer.from(f.hashKey, 'base64') };
    this.families.set(volume, fam);
    return fam;
  }

  /** Returns the family of `volume`, creating it (put-if-absent) on first use. */
  async ensureFamily(volume: string, blockSize = DEFAULT_BLOCK_SIZE): Promise<Family> {
    validateBlockSize(blockSize);
    let fam = await this.getFamily(volume);
    if (!fam) {
      const obj: FamilyObject = {
        format: 'blockgate-family', version: FORMAT_VERSION, volume, blockSize, shardBlocks: DEFAULT_SHARD_BLOCKS,
        hash: 'hmac-sha256(sha256(plaintext))', hashKey: randomBytes(32).toString('base64'), createdAt: new Date().toISOString(),
      };
      try {
        await this.store.put(keys.family(volume), Buffer.from(JSON.stringify(obj, null, 2)), { ifNoneMatch: '*' });
        this.createdFamilies.add(volume);
      } catch (err) {
        if (!isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) throw err;
        // Lost a creation race: use the winner's key.
      }
      fam = await this.getFamily(volume);
      if (!fam) throw new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, `family object for volume ${volume} vanished after creation`, { retryable: true });
    }
    if (fam.blockSize !== blockSize) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `volume ${volume} uses block size ${fam.blockSize}; cannot snapshot it with block size ${blockSize}`);
    }
    return fam;
  }

  /** True when this instance created the family (so its block namespace started empty). */
  isNewFamily(volume: string): boolean {
    return this.createdFamilies.has(volume);
  }

  async familyOf(root: SnapshotRoot): Promise<Family> {
    const fam = await this.getFamily(root.volume);
    if (!fam) throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `snapshot ${root.id}: family object for volume ${root.volume} is missing`);
    return fam;
  }

  // ------------------------------------------------------------ writes

  /** Starts an upload session (EBS StartSnapshot). Nothing is visible until complete(). */
  async start(options: StartOptions): Promise<UploadSession> {
    let parent: SnapshotRoot | null = null;
    if (options.parent) parent = await this.getRoot(options.parent);
    const volume = options.volume ?? parent?.volume;
    if (!volume) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'a volume name is required when there is no parent snapshot');
    if (parent && parent.volume !== volume) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `parent ${parent.id} belongs to volume ${parent.volume}, not ${volume}`);
    }
    const blockSize = options.blockSize ?? parent?.blockSize ?? (await this.getFamily(volume))?.blockSize ?? DEFAULT_BLOCK_SIZE;
    const size = options.size ?? parent?.size;
    if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid volume size ${String(size)}`);
    }
    const family = await this.ensureFamily(volume, blockSize);
    const session = new UploadSession(this, family, { ...options, volume, size, blockSize }, parent);
    await session.open();
    return session;
  }

  /**
   * Deletes a snapshot: its root moves to trash/ (so an upload that uses it
   * as parent, and GC, still see it for the grace period), then disappears.
   * Children are unaffected: they reference block and shard keys directly.
   */
  async delete(id: string): Promise<void> {
    const key = keys.root(id);
    let body: Buffer;
    try {
      body = (await this.store.get(key)).body;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw notFound(id);
      throw err;
    }
    decodeRoot(body, key);
    await this.store.put(keys.trash(id), body);
    await this.store.delete(key);
    this.roots.delete(id);
  }

  // ------------------------------------------------------------ reads

  async getRoot(id: string): Promise<SnapshotRoot> {
    const cached = this.roots.get(id);
    if (cached) return cached;
    if (!SNAPSHOT_ID_RE.test(id)) throw notFound(id);
    let body: Buffer;
    try {
      body = (await this.store.get(keys.root(id))).body;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw notFound(id);
      throw err;
    }
    const root = decodeRoot(body, keys.root(id));
    if (root.id !== id) throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `snapshot root ${keys.root(id)} names id ${root.id}`);
    this.roots.set(id, root);
    return root;
  }

  /** Reads a root from trash/ (deleted snapshots), or undefined. */
  async getTrashedRoot(id: string): Promise<SnapshotRoot | undefined> {
    try {
      return decodeRoot((await this.store.get(keys.trash(id))).body, keys.trash(id));
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) return undefined;
      throw err;
    }
  }

  /** Ids of all visible snapshots, oldest first. */
  async listIds(): Promise<string[]> {
    const ids: string[] = [];
    for await (const info of this.store.list(prefixes.roots)) {
      const m = /^snapshots\/(snap-[0-9a-f]+)\.json$/.exec(info.key);
      if (m) ids.push(m[1]!);
    }
    return ids.sort();
  }

  /** All visible snapshots (optionally of one volume), oldest first. */
  async list(volume?: string): Promise<SnapshotRoot[]> {
    const ids = await this.listIds();
    const roots = await mapBounded(ids, 8, async (id) => {
      try { return await this.getRoot(id); } catch (err) {
        if (isBlockgateError(err, ErrorCodes.SNAPSHOT_NOT_FOUND)) return undefined; // deleted meanwhile
        throw err;
      }
    });
    return roots.filter((r): r is SnapshotRoot => r !== undefined && (volume === undefined || r.volume === volume));
  }

  /** Entries of a shard object, verified and cached. `where` names the reader in errors. */
  async readShard(hash: string, where: () => string): Promise<ShardEntries> {
    const cached = this.shards.get(hash);
    if (cached) return cached;
    let body: Buffer;
    try {
      body = (await this.store.get(keys.shard(hash))).body;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) {
        throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `${where()}: shard object ${keys.shard(hash)} is missing`);
      }
      throw err;
    }
    const entries = decodeShard(body, hash, where);
    this.shards.set(hash, entries);
    return entries;
  }

  /** Block hash at `index` in `root` (null = zero). Reads at most one shard. */
  async blockHashAt(root: SnapshotRoot, index: number): Promise<string | null> {
    if (index < 0 || index >= blockCount(root.size, root.blockSize)) return null;
    const ref = root.shards[Math.floor(index / root.shardBlocks)];
    if (!ref) return null;
    const entries = await this.readShard(ref.k, () => `snapshot ${root.id} block ${index}`);
    return entries.get(index % root.shardBlocks) ?? null;
  }

  /**
   * Fetches, decodes and verifies one block object. With `into` (at least
   * BLOCK_HEADER + blockSize bytes) the body may be read into it and the
   * result may be a view of it: the caller owns both and recycles `into` only
   * when done with the result.
   */
  async readBlockObject(family: Family, hash: string, where: () => string, signal?: AbortSignal, into?: Buffer): Promise<Buffer> {
    let body: Buffer;
    try {
      body = (await this.store.get(keys.block(hash), { ...(signal ? { signal } : {}), ...(into ? { into } : {}) })).body;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) {
        throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `${where()}: block object ${keys.block(hash)} is missing`);
      }
      throw err;
    }
    const whereKey = (): string => `${where()}: block object ${keys.block(hash)}`;
    const { codec, plainLength, payload } = decodeBlockObject(body, whereKey);
    const plain = await decodePayload(codec, payload, plainLength, whereKey);
    if (blockHashFromDigest(family.key, await sha256Async(plain)) !== hash) {
      throw new BlockgateError(ErrorCodes.CHECKSUM_MISMATCH, `${whereKey()} fails its checksum (content does not match its address)`);
    }
    return plain;
  }

  /** EBS GetSnapshotBlock. Zero blocks come back as zeros with zero=true. */
  async getBlock(id: string, index: number, signal?: AbortSignal): Promise<BlockData> {
    const root = await this.getRoot(id);
    const n = blockCount(root.size, root.blockSize);
    if (!Number.isSafeInteger(index) || index < 0 || index >= n) {
      throw new BlockgateError(ErrorCodes.OUT_OF_RANGE, `snapshot ${id} has blocks 0..${n - 1}; block ${index} is out of range`);
    }
    const length = Math.min(root.blockSize, root.size - index * root.blockSize);
    const hash = await this.blockHashAt(root, index);
    let data: Buffer;
    if (hash === null) {
      data = Buffer.alloc(length);
    } else {
      const plain = await this.readBlockObject(await this.familyOf(root), hash, () => `snapshot ${id} block ${index}`, signal);
      if (plain.length < length) throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `snapshot ${id} block ${index}: block is shorter than the block size`);
      data = plain.length === length ? plain : plain.subarray(0, length);
    }
    return { data, checksum: (await sha256Async(data)).toString('base64'), zero: hash === null, hash };
  }

  /** EBS ListSnapshotBlocks: every non-zero block, ascending by index. */
  async *listBlocks(id: string): AsyncGenerator<{ index: number; hash: string }> {
    const root = await this.getRoot(id);
    for (let s = 0; s < root.shards.length; s++) {
      const ref = root.shards[s];
      if (!ref) continue;
      const entries = await this.readShard(ref.k, () => `snapshot ${id} shard ${s}`);
      for (const [off, hash] of [...entries].sort((a, b) => a[0] - b[0])) yield { index: s * root.shardBlocks + off, hash };
    }
  }

  /**
   * EBS ListChangedBlocks: indexes whose content differs between snapshots a and b.
   * Same volume family: compares shard keys first (unchanged shards cost
   * nothing), then block hashes — O(changed shards). Different families (no
   * shared key domain): compares plaintext digests of blocks, reading them.
   */
  async *listChangedBlocks(a: string, b: string): AsyncGenerator<ChangedBlock> {
    const ra = await this.getRoot(a);
    const rb = await this.getRoot(b);
    const sameFamily = ra.volume === rb.volume && ra.shardBlocks === rb.shardBlocks && ra.blockSize === rb.blockSize;
    if (!sameFamily && ra.blockSize !== rb.blockSize) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `snapshots ${a} and ${b} have different block sizes (${ra.blockSize} vs ${rb.blockSize})`);
    }
    const na = blockCount(ra.size, ra.blockSize);
    const nb = blockCount(rb.size, rb.blockSize);
    const n = Math.max(na, nb);
    const [fa, fb] = sameFamily ? [undefined, undefined] : [await this.familyOf(ra), await this.familyOf(rb)];
    if (sameFamily) {
      const shardCount = Math.max(ra.shards.length, rb.shards.length);
      for (let s = 0; s < shardCount; s++) {
        const sa = ra.shards[s] ?? null;
        const sb = rb.shards[s] ?? null;
        if (sa?.k === sb?.k) continue; // identical (or both empty) shard: no changes inside
        const ea = sa ? await this.readShard(sa.k, () => `snapshot ${a} shard ${s}`) : new Map<number, string>();
        const eb = sb ? await this.readShard(sb.k, () => `snapshot ${b} shard ${s}`) : new Map<number, string>();
        const offs = [...new Set([...ea.keys(), ...eb.keys()])].sort((x, y) => x - y);
        for (const off of offs) {
          const index = s * ra.shardBlocks + off;
          if (index >= n) continue;
          const ha = index < na ? ea.get(off) ?? null : null;
          const hb = index < nb ? eb.get(off) ?? null : null;
          if (ha !== hb) yield { index, first: ha, second: hb };
        }
      }
      return;
    }
    // Different key domains: the hashes are not comparable; compare plaintext digests.
    for (let index = 0; index < n; index++) {
      const ha = await this.blockHashAt(ra, index);
      const hb = await this.blockHashAt(rb, index);
      if (ha === null && hb === null) continue;
      if (ha === null || hb === null) { yield { index, first: ha, second: hb }; continue; }
      const da = await sha256Async(await this.readBlockObject(fa!, ha, () => `snapshot ${a} block ${index}`));
      const db = await sha256Async(await this.readBlockObject(fb!, hb, () => `snapshot ${b} block ${index}`));
      if (!da.equals(db)) yield { index, first: ha, second: hb };
    }
  }
}

export function notFound(id: string): BlockgateError {
  return new BlockgateError(ErrorCodes.SNAPSHOT_NOT_FOUND, `snapshot ${id} not found`, { details: { snapshot: id } });
}
