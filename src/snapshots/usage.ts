// Space accounting by walking the snapshot graph. Read-only; no states.
// For every visible snapshot: blocks it references, blocks only it references
// (exclusive: deleting it frees them, plus its exclusive shards and root),
// blocks shared with other snapshots, and the lineage figure recorded at
// upload (blocks new relative to its parent). Store totals include objects no
// visible snapshot references (garbage for GC, in-progress uploads, trash).
// Cost: one LIST of blocks/ and shards/, one GET per distinct shard (x2: two
// passes keep memory at one per-snapshot set plus one global refcount map).

import type { SnapshotStore } from './snapshot-store.js';
import { hashOfKey, prefixes, type SnapshotRoot } from './format.js';

export interface SnapshotUsage {
  id: string;
  volume: string;
  parent: string | null;
  createdAt: string;
  size: number;
  /** Distinct non-zero blocks referenced. */
  blocks: number;
  /** Logical bytes of those blocks (block size each). */
  referencedBytes: number;
  /** Blocks no other visible snapshot references. */
  exclusiveBlocks: number;
  sharedBlocks: number;
  /** Stored bytes freed by deleting this snapshot (exclusive blocks + shards) and running GC. */
  freedOnDelete: number;
  /** Blocks new relative to the parent, as recorded at upload. */
  newBlocks: number;
}

export interface UsageReport {
  snapshots: SnapshotUsage[];
  totals: {
    storedBlocks: number;
    storedBlockBytes: number;
    storedShards: number;
    storedShardBytes: number;
    referencedBlocks: number;
    /** Stored bytes of blocks no visible snapshot references. */
    unreferencedBytes: number;
    /** Sum of the logical sizes of all snapshots. */
    logicalBytes: number;
  };
}

export async function computeUsage(snaps: SnapshotStore, volume?: string): Promise<UsageReport> {
  const store = snaps.store;
  const blockSizes = new Map<string, number>();
  const shardSizes = new Map<string, number>();
  let storedBlockBytes = 0;
  let storedShardBytes = 0;
  for await (const info of store.list(prefixes.blocks)) {
    const h = hashOfKey(info.key);
    if (h) { blockSizes.set(h, info.size); storedBlockBytes += info.size; }
  }
  for await (const info of store.list(prefixes.shards)) {
    const h = hashOfKey(info.key);
    if (h) { shardSizes.set(h, info.size); storedShardBytes += info.size; }
  }
  const all = await snaps.list();
  const blockRefs = new Map<string, number>();
  const shardRefs = new Map<string, number>();
  const blocksOf = async (root: SnapshotRoot): Promise<Set<string>> => {
    const set = new Set<string>();
    for (let s = 0; s < root.shards.length; s++) {
      const ref = root.shards[s];
      if (!ref) continue;
      const entries = await snaps.readShard(ref.k, () => `snapshot ${root.id} shard ${s}`);
      for (const h of entries.values()) set.add(h);
    }
    return set;
  };
  // Pass 1: reference counts over all snapshots (accounting is store-wide even when filtered by volume).
  for (const root of all) {
    for (const h of await blocksOf(root)) blockRefs.set(h, (blockRefs.get(h) ?? 0) + 1);
    for (const k of new Set(root.shards.filter((r) => r !== null).map((r) => r!.k))) shardRefs.set(k, (shardRefs.get(k) ?? 0) + 1);
  }
  // Pass 2: per snapshot.
  const snapshots: SnapshotUsage[] = [];
  for (const root of all) {
    if (volume !== undefined && root.volume !== volume) continue;
    const set = await blocksOf(root);
    let exclusive = 0;
    let freed = 0;
    for (const h of set) {
      if (blockRefs.get(h) === 1) { exclusive++; freed += blockSizes.get(h) ?? 0; }
    }
    for (const k of new Set(root.shards.filter((r) => r !== null).map((r) => r!.k))) {
      if (shardRefs.get(k) === 1) freed += shardSizes.get(k) ?? 0;
    }
    snapshots.push({
      id: root.id, volume: root.volume, parent: root.parent, createdAt: root.createdAt, size: root.size,
      blocks: set.size, referencedBytes: set.size * root.blockSize, exclusiveBlocks: exclusive, sharedBlocks: set.size - exclusive,
      freedOnDelete: freed, newBlocks: root.stats.newBlocks,
    });
  }
  let unreferencedBytes = 0;
  for (const [h, size] of blockSizes) if (!blockRefs.has(h)) unreferencedBytes += size;
  return {
    snapshots,
    totals: {
      storedBlocks: blockSizes.size, storedBlockBytes, storedShards: shardSizes.size, storedShardBytes,
      referencedBlocks: blockRefs.size, unreferencedBytes, logicalBytes: all.reduce((a, r) => a + r.size, 0),
    },
  };
}
