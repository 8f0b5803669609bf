// Snapshot API and image transfer against every store (fs always; Ceph RGW
// when the harness provides it): bit-exact round trips, EBS-style checks,
// incremental cost, listChangedBlocks, corruption detection, delete, usage.
import { copyFileSync, readFileSync, statSync } from 'node:fs';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, isBlockgateError } from '../../src/errors.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { SnapshotStore, aggregateOf, computeUsage, downloadSnapshot, uploadImage } from '../../src/snapshots/index.js';
import { keys, sha256 } from '../../src/snapshots/format.js';
import { mutateBlocks, prng, sha, writeImage } from './images.js';
import { CountingObjectStore } from '../../src/object-store/counting.js';
import { storeFactories, tempDir } from './stores.js';

const BS = 64 * 1024;

async function expectCode(p: Promise<unknown>, code: string, match?: RegExp): Promise<Error> {
  try {
    await p;
  } catch (err) {
    expect(isBlockgateError(err) ? err.code : err).toBe(code);
    if (match) expect((err as Error).message).toMatch(match);
    return err as Error;
  }
  throw new Error(`expected ${code}, but it succeeded`);
}

describe.each(storeFactories())('snapshots on $name store', (factory) => {
  let store: ObjectStore;
  let counting: CountingObjectStore;
  let snaps: SnapshotStore;
  let cleanup: () => Promise<void>;
  const dir = tempDir();

  beforeAll(async () => {
    const s = await factory.create();
    store = s.store;
    cleanup = s.cleanup;
    counting = new CountingObjectStore(store);
    snaps = new SnapshotStore(counting, { concurrency: 8 });
  });
  afterAll(async () => { await cleanup(); rmSync(dir, { recursive: true, force: true }); });

  it.each([
    ['one byte', 1, () => false],
    ['not a multiple of the block size', BS * 5 + 1234, (i: number) => i === 2],
    ['sparse, trailing zeros', BS * 9, (i: number) => i % 2 === 1 || i >= 6],
    ['all zeros', BS * 4 + 7, () => true],
    ['empty', 0, () => false],
  ])('round-trips an image bit-exactly: %s', async (name, size, zero) => {
    const img = join(dir, `img-${name.replace(/\W+/g, '_')}`);
    writeImage(img, size, BS, `rt:${name}`, zero);
    const up = await uploadImage(snaps, img, { volume: `rt-${name.replace(/\W+/g, '-')}`, blockSize: BS });
    expect(up.root.size).toBe(size);
    const out = join(dir, `out-${name.replace(/\W+/g, '_')}`);
    const down = await downloadSnapshot(snaps, up.root.id, out);
    expect(statSync(out).size).toBe(size);
    expect(sha(out)).toBe(sha(img));
    // zero blocks are not stored and not written (holes)
    const n = Math.ceil(size / BS);
    const zeroCount = Array.from({ length: n }, (_, i) => i).filter((i) => zero(i)).length;
    expect(up.root.stats.blocks).toBe(n - zeroCount);
    expect(down.writtenBlocks).toBe(n - zeroCount);
    // listBlocks = non-zero blocks; getBlock matches the file
    const listed = [];
    for await (const b of snaps.listBlocks(up.root.id)) listed.push(b.index);
    expect(listed).toEqual(Array.from({ length: n }, (_, i) => i).filter((i) => !zero(i)));
    const data = readFileSync(img);
    for (let i = 0; i < n; i++) {
      const b = await snaps.getBlock(up.root.id, i);
      expect(b.data.equals(data.subarray(i * BS, Math.min(size, (i + 1) * BS)))).toBe(true);
      expect(b.zero).toBe(zero(i));
      expect(b.checksum).toBe(sha256(b.data).toString('base64'));
    }
  });

  it('direct API: verifies checksums, counts and the aggregate; invisible until complete', async () => {
    const size = BS * 3 + 100;
    const session = await snaps.start({ volume: 'api', size, blockSize: BS });
    const b0 = prng('api0', BS);
    const b2 = prng('api2', BS);
    const last = prng('api3', 100);
    await expectCode(session.putBlock(0, b0, sha256(b2).toString('base64')), ErrorCodes.CHECKSUM_MISMATCH, /block 0/);
    await expectCode(session.putBlock(7, b0, sha256(b0).toString('base64')), ErrorCodes.OUT_OF_RANGE);
    await expectCode(session.putBlock(1, b0.subarray(0, 10), sha256(b0.subarray(0, 10)).toString('base64')), ErrorCodes.INVALID_ARGUMENT);
    await Promise.all([
      session.putBlock(0, b0, sha256(b0).toString('base64')),
      session.putBlock(2, b2, sha256(b2).toString('base64')),
      session.putBlock(3, last, sha256(last).toString('base64')),
    ]);
    expect(await snaps.listIds()).not.toContain(session.id);
    await expectCode(snaps.getRoot(session.id), ErrorCodes.SNAPSHOT_NOT_FOUND, new RegExp(session.id));
    const agg = aggregateOf([sha256(b0), sha256(b2), sha256(last)]);
    await expectCode(session.complete(2, agg), ErrorCodes.INVALID_ARGUMENT, /count/);
    await expectCode(session.complete(3, aggregateOf([sha256(b2), sha256(b0), sha256(last)])), ErrorCodes.CHECKSUM_MISMATCH, /aggregate/);
    const root = await session.complete(3, agg);
    expect(root.id).toBe(session.id);
    expect(await snaps.listIds()).toContain(session.id);
    expect((await snaps.getBlock(root.id, 0)).data.equals(b0)).toBe(true);
    expect((await snaps.getBlock(root.id, 1)).zero).toBe(true);
    expect((await snaps.getBlock(root.id, 3)).data.equals(last)).toBe(true);
    await expectCode(session.putBlock(1, b0, sha256(b0).toString('base64')), ErrorCodes.SNAPSHOT_STATE);
    // no session markers left behind
    const left = [];
    for await (const o of store.list('sessions/')) left.push(o.key);
    expect(left).toEqual([]);
  });

  it('refuses a different block size for an existing volume family', async () => {
    await expectCode(snaps.start({ volume: 'api', size: BS, blockSize: BS * 2 }), ErrorCodes.INVALID_ARGUMENT, /block size/);
  });

  it('incremental upload after changing 1% of blocks sends about 1% of the bytes; listChangedBlocks and incremental download agree', async () => {
    const n = 200;
    const img = join(dir, 'inc.img');
    writeImage(img, n * BS, BS, 'inc', (i) => i % 10 === 9);
    const base = await uploadImage(snaps, img, { volume: 'inc', blockSize: BS });
    const before = join(dir, 'inc-before.img');
    copyFileSync(img, before);
    const changed = [3, 150]; // 1% of 200
    mutateBlocks(img, BS, changed, 'inc2');
    counting.reset();
    const child = await uploadImage(snaps, img, { parent: base.root.id });
    const changedBytes = changed.length * BS;
    expect(child.changedBlocks).toBe(2);
    expect(child.root.changedBlocks).toBe(2);
    expect(child.root.stats.newBlocks).toBe(2);
    expect(child.root.parent).toBe(base.root.id);
    // everything put (2 blocks, one shard, root, session markers) stays within 1.1x the changed bytes
    const sent = counting.snapshot().put.bytesOut;
    expect(sent).toBeGreaterThanOrEqual(changedBytes);
    expect(sent).toBeLessThanOrEqual(changedBytes * 1.1);

    const diff = [];
    for await (const c of snaps.listChangedBlocks(base.root.id, child.root.id)) diff.push(c.index);
    expect(diff).toEqual(changed);
    const none = [];
    for await (const c of snaps.listChangedBlocks(child.root.id, child.root.id)) none.push(c);
    expect(none).toEqual([]);

    // incremental restore of the old image to the new snapshot writes only the changed blocks
    const res = await downloadSnapshot(snaps, child.root.id, before, { incremental: true });
    expect(res.writtenBlocks).toBe(2);
    expect(sha(before)).toBe(sha(img));
    // and back again: the target now equals the child; restoring the base rewrites those 2
    const back = await downloadSnapshot(snaps, base.root.id, before, { incremental: true });
    expect(back.writtenBlocks).toBe(2);
  });

  it('listChangedBlocks works between any two snapshots, same or different volume', async () => {
    const n = 40;
    const a = join(dir, 'lcb-a.img');
    const b = join(dir, 'lcb-b.img');
    writeImage(a, n * BS, BS, 'lcb', (i) => i % 7 === 0);
    writeImage(b, n * BS + 5, BS, 'lcb', (i) => i % 5 === 0);
    mutateBlocks(b, BS, [1, 2, 39], 'lcb-x');
    const ra = await uploadImage(snaps, a, { volume: 'lcb-a', blockSize: BS });
    const rb = await uploadImage(snaps, b, { volume: 'lcb-a', blockSize: BS }); // same family, no lineage
    const rc = await uploadImage(snaps, b, { volume: 'lcb-c', blockSize: BS }); // other family
    const da = readFileSync(a);
    const db = readFileSync(b);
    const truth: number[] = [];
    for (let i = 0; i < n + 1; i++) {
      const x = Buffer.alloc(BS); da.copy(x, 0, i * BS, Math.min(da.length, (i + 1) * BS));
      const y = Buffer.alloc(BS); db.copy(y, 0, i * BS, Math.min(db.length, (i + 1) * BS));
      if (!x.equals(y)) truth.push(i);
    }
    for (const other of [rb, rc]) {
      const got = [];
      for await (const c of snaps.listChangedBlocks(ra.root.id, other.root.id)) got.push(c.index);
      expect(got).toEqual(truth);
    }
  });

  it('detects a corrupted block object and names snapshot and block index', async () => {
    const img = join(dir, 'corrupt.img');
    writeImage(img, BS * 4, BS, 'corrupt');
    const up = await uploadImage(snaps, img, { volume: 'corrupt', blockSize: BS });
    let hash: string | undefined;
    for await (const b of snaps.listBlocks(up.root.id)) if (b.index === 2) hash = b.hash;
    const key = keys.block(hash!);
    const body = (await store.get(key)).body;
    body[body.length - 10] ^= 0x55;
    await store.put(key, body);
    const fresh = new SnapshotStore(store);
    await expectCode(fresh.getBlock(up.root.id, 2), ErrorCodes.CHECKSUM_MISMATCH, new RegExp(`snapshot ${up.root.id} block 2`));
    await expectCode(downloadSnapshot(fresh, up.root.id, join(dir, 'corrupt.out')), ErrorCodes.CHECKSUM_MISMATCH, /block 2/);
    // a payload whose CRC was fixed up but whose content is wrong is caught by the content address
    const { crc32 } = await import('node:zlib');
    body.writeUInt32BE(crc32(body.subarray(16)) >>> 0, 12);
    await store.put(key, body);
    await expectCode(fresh.getBlock(up.root.id, 2), ErrorCodes.CHECKSUM_MISMATCH, /does not match its address|block 2/);
    // a missing block object is reported as corruption too
    await store.delete(key);
    await expectCode(fresh.getBlock(up.root.id, 2), ErrorCodes.SNAPSHOT_CORRUPT, /block 2.*missing/);
  });

  it('delete: children keep working; usage accounts unique and shared blocks', async () => {
    const n = 30;
    const img = join(dir, 'del.img');
    writeImage(img, n * BS, BS, 'del');
    const p = await uploadImage(snaps, img, { volume: 'del', blockSize: BS });
    mutateBlocks(img, BS, [0, 1, 2], 'del2');
    const c = await uploadImage(snaps, img, { parent: p.root.id });
    const usage = await computeUsage(snaps, 'del');
    const up = usage.snapshots.find((s) => s.id === p.root.id)!;
    const uc = usage.snapshots.find((s) => s.id === c.root.id)!;
    expect(up.blocks).toBe(n);
    expect(up.exclusiveBlocks).toBe(3);
    expect(up.sharedBlocks).toBe(n - 3);
    expect(uc.exclusiveBlocks).toBe(3);
    expect(uc.newBlocks).toBe(3);
    expect(up.freedOnDelete).toBeGreaterThan(3 * BS * 0.5);
    expect(up.freedOnDelete).toBeLessThan(3 * BS * 1.1 + 20000);

    await snaps.delete(p.root.id);
    await expectCode(snaps.getRoot(p.root.id), ErrorCodes.SNAPSHOT_NOT_FOUND);
    await expectCode(snaps.delete(p.root.id), ErrorCodes.SNAPSHOT_NOT_FOUND);
    await expectCode(snaps.start({ parent: p.root.id }), ErrorCodes.SNAPSHOT_NOT_FOUND);
    const out = join(dir, 'del.out');
    await downloadSnapshot(snaps, c.root.id, out);
    expect(sha(out)).toBe(sha(img));
    const after = await computeUsage(snaps, 'del');
    expect(after.snapshots.map((s) => s.id)).toEqual([c.root.id]);
    expect(after.snapshots[0]!.exclusiveBlocks).toBe(n);
  });

  it('unknown snapshot ids fail with SNAPSHOT_NOT_FOUND', async () => {
    await expectCode(snaps.getRoot('snap-000000000000ffffffffff'), ErrorCodes.SNAPSHOT_NOT_FOUND);
    await expectCode(snaps.getRoot('../etc/passwd'), ErrorCodes.SNAPSHOT_NOT_FOUND);
  });
});

describe('uploadReadable (fs store)', () => {
  it('re-chunks any stream into the same blocks as uploadImage; refuses short and long streams', async () => {
    const { FsObjectStore } = await import('../../src/object-store/fs.js');
    const { createReadStream } = await import('node:fs');
    const { uploadReadable } = await import('../../src/snapshots/index.js');
    const dir = tempDir();
    const store = await FsObjectStore.open(join(dir, 'store'), { durable: false });
    const snaps = new SnapshotStore(store);
    const img = join(dir, 'r.img');
    const size = BS * 7 + 4321;
    writeImage(img, size, BS, 'readable', (i) => i === 3);
    const a = await uploadImage(snaps, img, { volume: 'rd', blockSize: BS });
    const b = await uploadReadable(snaps, createReadStream(img, { highWaterMark: 10_007 }), size, { volume: 'rd' });
    async function* odd(): AsyncGenerator<Uint8Array> {
      const data = readFileSync(img);
      for (let o = 0, k = 1; o < data.length; k++) { const n = (k * 7919) % 200_000 + 1; yield new Uint8Array(data.subarray(o, o + n)); o += n; }
    }
    const c = await uploadReadable(snaps, odd(), size, { volume: 'rd' });
    for (const other of [b, c]) {
      const diff = [];
      for await (const d of snaps.listChangedBlocks(a.root.id, other.root.id)) diff.push(d);
      expect(diff).toEqual([]);
      expect(other.zeroBlocks).toBe(1);
    }
    const out = join(dir, 'r.out');
    await downloadSnapshot(snaps, c.root.id, out);
    expect(sha(out)).toBe(sha(img));
    await expectCode(uploadReadable(snaps, createReadStream(img), size + 1, { volume: 'rd' }), ErrorCodes.INVALID_ARGUMENT, /fewer than/);
    await expectCode(uploadReadable(snaps, createReadStream(img), size - 1, { volume: 'rd' }), ErrorCodes.INVALID_ARGUMENT, /more than/);
    expect((await snaps.list('rd')).length).toBe(3);
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
