// GC: never deletes what a live snapshot, a session's parent or an upload in
// progress needs; reclaims what deleted snapshots and dead uploads left.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, isBlockgateError } from '../../src/errors.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { SnapshotStore, aggregateOf, collectGarbage, computeUsage, downloadSnapshot, uploadImage } from '../../src/snapshots/index.js';
import { keys, sha256 } from '../../src/snapshots/format.js';
import { mutateBlocks, prng, sha, writeImage } from './images.js';
import { MemoryStore } from './memory-store.js';
import { storeClockTick } from './store-clock.js';
import { storeFactories, tempDir } from './stores.js';

const BS = 64 * 1024;

async function countKeys(store: ObjectStore, prefix: string): Promise<number> {
  let n = 0;
  for await (const o of store.list(prefix)) { void o; n++; }
  return n;
}

describe.each(storeFactories())('gc on $name store', (factory) => {
  let store: ObjectStore;
  let cleanup: () => Promise<void>;
  let snaps: SnapshotStore;
  const dir = tempDir();

  beforeAll(async () => {
    ({ store, cleanup } = await factory.create());
    snaps = new SnapshotStore(store, { concurrency: 4 });
  });
  afterAll(async () => { await cleanup(); rmSync(dir, { recursive: true, force: true }); });

  it('reclaims the blocks of a deleted parent that no child uses; dry-run deletes nothing', async () => {
    const img = join(dir, 'a.img');
    writeImage(img, BS * 20, BS, 'gc-a');
    const p = await uploadImage(snaps, img, { volume: 'gca', blockSize: BS });
    mutateBlocks(img, BS, [0, 5, 9], 'gc-a2');
    const c = await uploadImage(snaps, img, { parent: p.root.id });
    const blocksBefore = await countKeys(store, 'blocks/');
    await snaps.delete(p.root.id);
    await storeClockTick(store);
    // within the grace period the trashed root still pins its blocks
    const young = await collectGarbage(snaps, { graceMs: 3600_000 });
    expect(young.sweptBlocks).toBe(0);
    await storeClockTick(store);
    const dry = await collectGarbage(snaps, { graceMs: 0, dryRun: true });
    expect(dry.sweptBlocks).toBe(3);
    expect(await countKeys(store, 'blocks/')).toBe(blocksBefore);
    const real = await collectGarbage(snaps, { graceMs: 0 });
    expect(real.sweptBlocks).toBe(3);
    expect(real.expiredTrash).toBe(1);
    expect(await countKeys(store, 'blocks/')).toBe(blocksBefore - 3);
    expect(await countKeys(store, 'trash/')).toBe(0);
    const out = join(dir, 'a.out');
    await downloadSnapshot(snaps, c.root.id, out);
    expect(sha(out)).toBe(sha(img));
    expect((await computeUsage(snaps)).totals.unreferencedBytes).toBe(0);
  });

  it('keeps everything an upload in progress wrote, across gc runs during the upload', async () => {
    const size = BS * 12;
    const session = await snaps.start({ volume: 'gcb', size, blockSize: BS });
    const blocks = Array.from({ length: 12 }, (_, i) => prng(`gcb:${i}`, BS));
    for (let i = 0; i < 6; i++) await session.putBlock(i, blocks[i]!, sha256(blocks[i]!).toString('base64'));
    await storeClockTick(store);
    const r1 = await collectGarbage(snaps, { graceMs: 0 });
    expect(r1.activeSessions).toBe(1);
    expect(r1.sweptBlocks).toBe(0);
    for (let i = 6; i < 12; i++) await session.putBlock(i, blocks[i]!, sha256(blocks[i]!).toString('base64'));
    await storeClockTick(store);
    await collectGarbage(snaps, { graceMs: 0 });
    const root = await session.complete(12, aggregateOf(blocks.map((b) => sha256(b))));
    await storeClockTick(store);
    await collectGarbage(snaps, { graceMs: 0 });
    for (let i = 0; i < 12; i++) expect((await new SnapshotStore(store).getBlock(root.id, i)).data.equals(blocks[i]!)).toBe(true);
  });

  it('gc running concurrently with uploadImage, in a loop, never breaks the snapshot', async () => {
    const img = join(dir, 'c.img');
    writeImage(img, BS * 80 + 17, BS, 'gc-c', (i) => i % 6 === 0);
    let done = false;
    let runs = 0;
    const loop = (async () => {
      while (!done && runs < 50) { await collectGarbage(snaps, { graceMs: 0 }); runs++; }
    })();
    const up = await uploadImage(snaps, img, { volume: 'gcc', blockSize: BS });
    done = true;
    await loop;
    await storeClockTick(store);
    await collectGarbage(snaps, { graceMs: 0 });
    expect(runs).toBeGreaterThan(0);
    const out = join(dir, 'c.out');
    await downloadSnapshot(new SnapshotStore(store), up.root.id, out);
    expect(sha(out)).toBe(sha(img));
  });

  it('a parent deleted and collected during a child upload stays readable through the child', async () => {
    const img = join(dir, 'd.img');
    writeImage(img, BS * 16, BS, 'gc-d');
    const p = await uploadImage(snaps, img, { volume: 'gcd', blockSize: BS });
    const session = await snaps.start({ parent: p.root.id });
    await snaps.delete(p.root.id);
    await storeClockTick(store);
    await collectGarbage(snaps, { graceMs: 0 }); // trash is expired by age, but pinned by the session
    const nb = prng('gcd-new', BS);
    await session.putBlock(3, nb, sha256(nb).toString('base64'));
    const child = await session.complete(1, aggregateOf([sha256(nb)]));
    await storeClockTick(store);
    await collectGarbage(snaps, { graceMs: 0 });
    mutateBlocks(img, BS, [], 'x');
    const out = join(dir, 'd.out');
    await downloadSnapshot(new SnapshotStore(store), child.id, out);
    const expected = join(dir, 'd.expected');
    const { copyFileSync, openSync, writeSync, closeSync } = await import('node:fs');
    copyFileSync(img, expected);
    const fd = openSync(expected, 'r+'); writeSync(fd, nb, 0, BS, 3 * BS); closeSync(fd);
    expect(sha(out)).toBe(sha(expected));
  });

  it('refuses to sweep when a live snapshot\'s shard cannot be read', async () => {
    const img = join(dir, 'e.img');
    writeImage(img, BS * 4, BS, 'gc-e');
    const up = await uploadImage(snaps, img, { volume: 'gce', blockSize: BS });
    const shardKey = keys.shard(up.root.shards[0]!.k);
    const body = (await store.get(shardKey)).body;
    await store.put(shardKey, Buffer.concat([body, Buffer.from('x')]));
    await storeClockTick(store);
    await expect(collectGarbage(new SnapshotStore(store), { graceMs: 0 })).rejects.toSatisfy((e: unknown) => isBlockgateError(e, ErrorCodes.CHECKSUM_MISMATCH));
    expect(await countKeys(store, 'blocks/')).toBeGreaterThan(0);
    await store.put(shardKey, body);
    const out = join(dir, 'e.out');
    await downloadSnapshot(new SnapshotStore(store), up.root.id, out);
    expect(sha(out)).toBe(sha(img));
  });
});

describe('gc vs an upload that reuses old unreferenced blocks (memory store, controlled clock)', () => {
  it('the upload notices blocks removed by an overlapping gc and refuses to publish; a rerun succeeds', async () => {
    const mem = new MemoryStore();
    let clock = 1_000_000_000_000;
    mem.now = () => clock;
    const snaps = new SnapshotStore(mem, { gcPollMs: 1 });
    const blocks = Array.from({ length: 4 }, (_, i) => prng(`reuse:${i}`, BS));
    // A dead upload left these blocks long ago.
    const dead = await snaps.start({ volume: 'reuse', size: BS * 4, blockSize: BS });
    for (let i = 0; i < 4; i++) await dead.putBlock(i, blocks[i]!, sha256(blocks[i]!).toString('base64'));
    clock += 3600_000;
    // New session dedups against them (they are older than its start marker).
    const s = await snaps.start({ volume: 'reuse', size: BS * 4, blockSize: BS });
    for (let i = 0; i < 4; i++) await s.putBlock(i, blocks[i]!, sha256(blocks[i]!).toString('base64'));
    expect(s.counters.uploadedBlocks).toBe(0);
    clock += 1000;
    const gc = await collectGarbage(snaps, { graceMs: 0 });
    expect(gc.sweptBlocks).toBe(4); // unreferenced and older than every active session
    clock += 1000;
    await expect(s.complete(4, aggregateOf(blocks.map((b) => sha256(b))))).rejects.toSatisfy(
      (e: unknown) => isBlockgateError(e, ErrorCodes.SNAPSHOT_STATE) && e.retryable && /garbage collection removed 4/.test(e.message));
    expect(await snaps.listIds()).toEqual([]);
    await s.abort();
    const again = await snaps.start({ volume: 'reuse', size: BS * 4, blockSize: BS });
    for (let i = 0; i < 4; i++) await again.putBlock(i, blocks[i]!, sha256(blocks[i]!).toString('base64'));
    const root = await again.complete(4, aggregateOf(blocks.map((b) => sha256(b))));
    for (let i = 0; i < 4; i++) expect((await snaps.getBlock(root.id, i)).data.equals(blocks[i]!)).toBe(true);
  });

  it('without an overlapping gc the reused blocks are published as is', async () => {
    const mem = new MemoryStore();
    let clock = 2_000_000_000_000;
    mem.now = () => clock;
    const snaps = new SnapshotStore(mem);
    const b = prng('reuse2', BS);
    const dead = await snaps.start({ volume: 'r2', size: BS, blockSize: BS });
    await dead.putBlock(0, b, sha256(b).toString('base64'));
    clock += 3600_000;
    const s = await snaps.start({ volume: 'r2', size: BS, blockSize: BS });
    await s.putBlock(0, b, sha256(b).toString('base64'));
    const root = await s.complete(1, aggregateOf([sha256(b)]));
    clock += 1000;
    const gc = await collectGarbage(snaps, { graceMs: 0 });
    expect(gc.sweptBlocks).toBe(0);
    expect((await snaps.getBlock(root.id, 0)).data.equals(b)).toBe(true);
  });
});
