// CachedVolume in-process: data path (log over cache over store), uploads
// advancing the live root, reopen with a wiped cache, snapshots and clones,
// store outage with backpressure, a working set larger than the cache.
import { rmSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import { CheckedDevice } from '../../src/block-device/checked-device.js';
import type { CachedRuntime } from '../../src/volumes/cached/runtime.js';
import type { CachedVolume } from '../../src/volumes/cached/cached-volume.js';
import { KiB, MiB, fsStore, logger, pattern, runtime, tmp, until, volumeConfig } from './helpers.js';
import { mulberry32 } from '../harness/prng.js';
import { settle } from '../harness/until.js';
import type { FaultInjectingObjectStore } from '../../src/object-store/fault.js';

/** Faults the wrapper has injected so far (every store call the outage refused). */
function injectedTotal(f: FaultInjectingObjectStore): number {
  return Object.values(f.injected).reduce((a, b) => a + b, 0);
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(options: { faults?: boolean } = {}) {
  const t = tmp();
  cleanups.push(t.cleanup);
  const { store, faults } = await fsStore(`${t.dir}/store`, options);
  return { dir: t.dir, store, faults };
}

async function open(rt: CachedRuntime, cfg: ReturnType<typeof volumeConfig>, start = true): Promise<CachedVolume> {
  const vol = await rt.openVolume(cfg, logger);
  if (start) await rt.start();
  return vol;
}

async function shutdown(rt: CachedRuntime): Promise<void> {
  await rt.stopBackground();
  for (const v of rt.volumes.values()) await v.close();
}

async function drained(rt: CachedRuntime, name: string): Promise<void> {
  await until(() => {
    const v = rt.volumes.get(name)!;
    return v.log.newestSeq <= v.log.releasedSeq;
  }, 120_000, `${name} drained`);
}

async function readAll(dev: CheckedDevice | CachedVolume, size: number): Promise<Buffer> {
  const b = Buffer.alloc(size);
  await dev.read(b, 0);
  return b;
}

describe('cached volume: data path', () => {
  it('reads merge the log over the store; uploads advance the live root and release the log', async () => {
    const { dir, store } = await setup();
    const rt = runtime(store, `${dir}/data`);
    const cfg = volumeConfig(dir, 'v1');
    const vol = await open(rt, cfg);
    const dev = new CheckedDevice(vol, 'v1');
    const model = Buffer.alloc(16 * MiB);
    expect((await readAll(dev, 16 * MiB)).equals(model)).toBe(true);
    // Whole blocks, partial blocks, an unaligned write spanning blocks, a zero.
    const writes: Array<[number, Buffer]> = [
      [0, pattern(1, 256 * KiB)], [1 * MiB + 4096, pattern(2, 8192)], [3 * MiB - 100, pattern(3, 300)], [5 * MiB + 1, pattern(4, 200_001)],
    ];
    for (const [off, data] of writes) { await dev.write(Buffer.from(data), off, false); data.copy(model, off); }
    await dev.zero(64 * KiB, 64 * KiB, { fua: true, mayTrim: true, fast: false });
    model.fill(0, 64 * KiB, 128 * KiB);
    expect((await readAll(dev, 16 * MiB)).equals(model)).toBe(true);
    await drained(rt, 'v1');
    const root1 = vol.liveRoot;
    expect(root1?.id).toMatch(/^snap-/);
    // After release, reads come from the store/cache and still match.
    expect((await readAll(dev, 16 * MiB)).equals(model)).toBe(true);
    // Partial overwrite of a block that is only in the store: merged at upload time.
    await dev.write(pattern(5, 1000), 1 * MiB + 10, true);
    pattern(5, 1000).copy(model, 1 * MiB + 10);
    expect((await readAll(dev, 16 * MiB)).equals(model)).toBe(true);
    await drained(rt, 'v1');
    expect(vol.liveRoot?.id).not.toBe(root1?.id);
    // Superseded auto roots are deleted (in the background, after the new root commits): one visible root remains.
    await until(async () => (await rt.snaps.list('v1')).length === 1, 30_000, 'superseded roots deleted');
    expect((await rt.snaps.list('v1')).map((r) => r.id)).toEqual([vol.liveRoot!.id]);
    await shutdown(rt);

    // Reopen with the cache wiped: everything from the store.
    rmSync(cfg.cache.dir, { recursive: true, force: true });
    const rt2 = runtime(store, `${dir}/data`);
    const vol2 = await open(rt2, cfg);
    expect((await readAll(vol2, 16 * MiB)).equals(model)).toBe(true);
    expect(vol2.details().cache.misses).toBeGreaterThan(0);
    // Second read: hits.
    const before = vol2.details().cache.hits;
    expect((await readAll(vol2, 16 * MiB)).equals(model)).toBe(true);
    expect(vol2.details().cache.hits).toBeGreaterThan(before);
    await shutdown(rt2);
  });

  it('small and unaligned reads (the single-block fast path) match a model: dirty, drained, after a new live root (seeded)', async () => {
    const { dir, store } = await setup();
    const rt = runtime(store, `${dir}/data`);
    const cfg = volumeConfig(dir, 'v5', { readAheadBlocks: 0 });
    const vol = await open(rt, cfg);
    const model = Buffer.alloc(16 * MiB);
    const rnd = mulberry32(51);
    const check = async (what: string): Promise<void> => {
      for (let n = 0; n < 300; n++) {
        const len = rnd() < 0.7 ? 4096 : 1 + Math.floor(rnd() * 3 * 64 * KiB);
        const off = rnd() < 0.7 ? 4096 * Math.floor(rnd() * (16 * MiB - len) / 4096) : Math.floor(rnd() * (16 * MiB - len));
        const b = Buffer.alloc(len, 0xee);
        await vol.read(b, off);
        expect(b.equals(model.subarray(off, off + len)), `${what}: read ${off}+${len}`).toBe(true);
      }
    };
    await vol.write(pattern(11, 6 * MiB), 0, { fua: false });
    pattern(11, 6 * MiB).copy(model, 0);
    await check('dirty (in the log)');
    await drained(rt, 'v5');
    await check('drained (cache and store)');
    const hits = vol.details().cache.hits;
    await check('drained, again');
    expect(vol.details().cache.hits).toBeGreaterThan(hits);
    // New data over old blocks: dirty again, then a new live root with new shards.
    const root1 = vol.liveRoot!.id;
    await vol.write(pattern(12, 100_000), 3 * MiB - 50_000, { fua: false });
    pattern(12, 100_000).copy(model, 3 * MiB - 50_000);
    await vol.write(pattern(13, 64 * KiB), 10 * MiB, { fua: false });
    pattern(13, 64 * KiB).copy(model, 10 * MiB);
    await check('dirty over cached blocks');
    await drained(rt, 'v5');
    expect(vol.liveRoot!.id).not.toBe(root1);
    await check('after the new root');
    await shutdown(rt);
  });

  it('unuploaded writes survive a reopen (from the log) and then upload', async () => {
    const { dir, store } = await setup();
    const cfg = volumeConfig(dir, 'v2', { uploadIntervalMs: 60_000 });
    const rt = runtime(store, `${dir}/data`);
    const vol = await open(rt, cfg, false); // uploader never started
    await vol.write(pattern(7, 128 * KiB), 192 * KiB, { fua: false });
    await vol.flush();
    await vol.close(); // lease stays held (log not drained)
    const rt2 = runtime(store, `${dir}/data`);
    const vol2 = await open(rt2, { ...cfg, uploadIntervalMs: 50 });
    const b = Buffer.alloc(128 * KiB);
    await vol2.read(b, 192 * KiB);
    expect(b.equals(pattern(7, 128 * KiB))).toBe(true);
    await drained(rt2, 'v2');
    rmSync(cfg.cache.dir, { recursive: true, force: true });
    await vol2.read(b, 192 * KiB);
    expect(b.equals(pattern(7, 128 * KiB))).toBe(true);
    await shutdown(rt2);
  });
});

describe('cached volume: snapshots and clones', () => {
  it('a snapshot is the volume as of its marker; a clone from it is usable at once and independent', async () => {
    const { dir, store } = await setup();
    const rt = runtime(store, `${dir}/data`);
    const vol = await open(rt, volumeConfig(dir, 'src'));
    const a = pattern(11, 16 * MiB);
    await vol.write(Buffer.from(a), 0, { fua: false });
    const snap = await rt.snapshot('src', { description: 'A', waitMs: 120_000 });
    expect(snap.state).toBe('complete');
    await vol.write(pattern(12, 2 * MiB), 0, { fua: false }); // after the marker: not in the snapshot
    const got = await rt.snaps.getBlock(snap.id, 0);
    expect(got.data.equals(a.subarray(0, 64 * KiB))).toBe(true);
    expect((await rt.listSnapshots('src')).map((s) => s.id)).toContain(snap.id);
    await drained(rt, 'src');
    // The user snapshot survives later uploads (pinned), the auto roots do not pile up.
    await vol.write(pattern(13, 64 * KiB), 8 * MiB, { fua: false });
    await drained(rt, 'src');
    expect((await rt.snaps.getRoot(snap.id)).id).toBe(snap.id);

    const clone = await open(rt, volumeConfig(dir, 'clone', { size: undefined, blockSize: undefined, fromSnapshot: snap.id }));
    expect(clone.size).toBe(16 * MiB);
    expect((await readAll(clone, 16 * MiB)).equals(a)).toBe(true);
    await clone.write(pattern(14, 64 * KiB), 0, { fua: true });
    await drained(rt, 'clone');
    // Deleting the origin snapshot does not affect the clone (its live root is its own).
    await rt.snaps.delete(snap.id);
    rmSync(volumeConfig(dir, 'clone').cache.dir, { recursive: true, force: true });
    const expectClone = Buffer.from(a);
    pattern(14, 64 * KiB).copy(expectClone, 0);
    expect((await readAll(clone, 16 * MiB)).equals(expectClone)).toBe(true);
    await shutdown(rt);
  });
});

describe('cached volume: faults and pressure', () => {
  it('store outage: writes continue into the log until it is full, then wait; all land once the store is back', async () => {
    const { dir, store, faults } = await setup({ faults: true });
    const rt = runtime(store, `${dir}/data`);
    const cfg = volumeConfig(dir, 'out', { writeLog: { dir: `${dir}/out-log`, size: 4 * MiB } });
    const vol = await open(rt, cfg);
    faults!.addRule({ ops: ['put', 'get', 'head', 'list', 'delete'], action: 'fail', error: 'unavailable' });
    const model = Buffer.alloc(16 * MiB);
    let acked = 0;
    const pending: Array<Promise<void>> = [];
    for (let i = 0; i < 16; i++) {
      const data = pattern(100 + i, 512 * KiB);
      data.copy(model, i * 512 * KiB);
      pending.push(vol.write(Buffer.from(data), i * 512 * KiB, { fua: false }).then(() => { acked++; }));
    }
    // Every write is either acknowledged or waiting for log space (none still being appended).
    await until(() => acked >= 6 && acked + vol.details().log.waitingWriters === 16, 30_000, 'the log to fill up: writes acknowledged or waiting');
    // The log is full: while the uploader keeps hitting the outage (two more failed store calls),
    // no waiting write is acknowledged.
    const stuck = acked;
    const failed = injectedTotal(faults!);
    await until(() => injectedTotal(faults!) >= failed + 2, 60_000, 'the uploader to retry against the outage');
    expect(acked).toBe(stuck);
    expect(acked).toBeLessThan(16);
    expect(vol.details().log.waitingWriters).toBeGreaterThan(0);
    faults!.clearRules();
    await Promise.all(pending);
    await drained(rt, 'out');
    rmSync(cfg.cache.dir, { recursive: true, force: true });
    expect((await readAll(vol, 16 * MiB)).equals(model)).toBe(true);
    await shutdown(rt);
  });

  it('the log is released only after reads that started with the previous live root have finished', async () => {
    const { dir, store, faults } = await setup({ faults: true });
    const cfg = volumeConfig(dir, 'gen', { readAheadBlocks: 0 });
    let rt = runtime(store, `${dir}/data`);
    await open(rt, cfg);
    await rt.volumes.get('gen')!.write(pattern(31, 64 * KiB), 0, { fua: true });
    await drained(rt, 'gen');
    await shutdown(rt);
    rmSync(cfg.cache.dir, { recursive: true, force: true }); // block 0 must come from the store
    rt = runtime(store, `${dir}/data`);
    const vol = await open(rt, cfg);
    const root1 = vol.liveRoot!.id;
    faults!.addRule({ ops: ['get'], keyPrefix: 'blocks/', action: 'delay', latencyMs: 4000 });
    let readDone = false;
    const b = Buffer.alloc(4096);
    const read = vol.read(b, 0).then(() => { readDone = true; }); // starts with root1, waits on the slow fetch
    await vol.write(pattern(32, 4096), 10 * 64 * KiB, { fua: true }); // another block: its upload needs no fetch
    await until(() => vol.liveRoot!.id !== root1, 30_000, 'new live root committed');
    expect(readDone).toBe(false);
    // commitRoot switched the root and now waits for the read that started with root1 before it
    // releases the log (its waiter is registered in the same step as the switch).
    expect((vol as unknown as { readerWaiters: unknown[] }).readerWaiters.length).toBeGreaterThan(0);
    await settle();
    expect(vol.log.releasedSeq).toBeLessThan(vol.log.newestSeq); // held for the read of root1
    await read;
    expect(b.equals(pattern(31, 64 * KiB).subarray(0, 4096))).toBe(true);
    await drained(rt, 'gen'); // then released
    faults!.clearRules();
    await shutdown(rt);
  });

  it('working set 4x the cache: every byte verified, cache stays within its size', async () => {
    const { dir, store } = await setup();
    const rt = runtime(store, `${dir}/data`);
    const cfg = volumeConfig(dir, 'big', { size: 32 * MiB, cache: { dir: `${dir}/big-cache`, size: 8 * MiB } });
    const vol = await open(rt, cfg);
    for (let i = 0; i < 32; i++) await vol.write(pattern(200 + i, MiB), i * MiB, { fua: false });
    await drained(rt, 'big');
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 32; i++) {
        const b = Buffer.alloc(MiB);
        await vol.read(b, i * MiB);
        expect(b.equals(pattern(200 + i, MiB)), `MiB ${i} round ${round}`).toBe(true);
      }
    }
    const d = vol.details();
    expect(d.cache.bytesCached).toBeLessThanOrEqual(8 * MiB);
    expect(d.cache.evictions).toBeGreaterThan(0);
    await shutdown(rt);
  });
});

describe('cached volume: fencing', () => {
  it('a second gateway is refused; a forced takeover fences the first (writes fail, its roots cannot commit)', async () => {
    const { dir, store } = await setup();
    const rtA = runtime(store, `${dir}/dataA`, { leaseRenewMs: 100 });
    const volA = await open(rtA, volumeConfig(dir, 'f', { writeLog: { dir: `${dir}/fA-log`, size: 32 * MiB }, cache: { dir: `${dir}/fA-cache`, size: 8 * MiB } }));
    await volA.write(pattern(1, 64 * KiB), 0, { fua: true });
    await drained(rtA, 'f');
    const rtB = runtime(store, `${dir}/dataB`, { leaseRenewMs: 100 });
    const cfgB = volumeConfig(dir, 'f', { writeLog: { dir: `${dir}/fB-log`, size: 32 * MiB }, cache: { dir: `${dir}/fB-cache`, size: 8 * MiB } });
    await expect(rtB.openVolume(cfgB, logger)).rejects.toMatchObject({ code: ErrorCodes.LEASE_HELD });
    const volB = await rtB.openVolume({ ...cfgB, lease: { ttlMs: 60_000, takeover: 'force' } }, logger);
    await rtB.start();
    const b = Buffer.alloc(64 * KiB);
    await volB.read(b, 0);
    expect(b.equals(pattern(1, 64 * KiB))).toBe(true);
    await until(() => volA.fenced, 10_000, 'A fenced');
    await expect(volA.write(pattern(2, 4096), 0, { fua: false })).rejects.toMatchObject({ code: ErrorCodes.FENCED });
    await expect(volA.flush()).rejects.toMatchObject({ code: ErrorCodes.FENCED });
    await volB.write(pattern(3, 4096), 0, { fua: true });
    await drained(rtB, 'f');
    await shutdown(rtA);
    await shutdown(rtB);
  });
});
