// Stored volumes in-process over a filesystem store (optionally with injected
// faults): data path, redo, shadowing, point-in-time snapshots, all-or-nothing
// multi-volume snapshots, outage, backpressure, lazy restore.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { SnapshotStore, downloadSnapshot } from '../../src/snapshots/index.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { WriteLog } from '../../src/write-log/write-log.js';
import { listGroups } from '../../src/volumes/stored/coordinator.js';
import type { StoredRuntime } from '../../src/volumes/stored/runtime.js';
import { MiB, fsRuntime, pattern, tmp, until, volumeConfig, logger } from './helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function shutdown(rt: StoredRuntime): Promise<void> {
  await rt.stopBackground();
  for (const v of rt.volumes.values()) await v.close();
  await rt.close();
}

async function setup(options: { faults?: boolean; volumes?: string[]; over?: Parameters<typeof volumeConfig>[2] } = {}) {
  const t = tmp();
  cleanups.push(t.cleanup);
  const storeDir = join(t.dir, 'store');
  const { rt, faults } = await fsRuntime(storeDir, { faults: options.faults ?? false });
  for (const name of options.volumes ?? ['v1']) await rt.openVolume(volumeConfig(t.dir, name, options.over), logger);
  await rt.start();
  let closed = false;
  cleanups.push(async () => { if (!closed) await shutdown(rt); });
  return { dir: t.dir, storeDir, rt, faults, close: async () => { closed = true; await shutdown(rt); } };
}

async function readBack(storeDir: string, snapshot: string, into: string): Promise<Buffer> {
  const store = await FsObjectStore.open(storeDir);
  await downloadSnapshot(new SnapshotStore(store), snapshot, into);
  await store.close();
  return readFileSync(into);
}

describe('stored volume: data path', () => {
  it('writes reach the disk and the log; reads see them; flush syncs the log', async () => {
    const { rt, dir } = await setup();
    const v = rt.volumes.get('v1')!;
    await v.write(pattern(1, 100_000), 12_345, { fua: false });
    await v.zero(1 * MiB, 70_000, { fua: true, mayTrim: false, fast: false });
    await v.flush();
    const back = Buffer.alloc(100_000);
    await v.read(back, 12_345);
    expect(back.equals(pattern(1, 100_000))).toBe(true);
    const disk = readFileSync(join(dir, 'v1.img'));
    expect(disk.subarray(12_345, 112_345).equals(pattern(1, 100_000))).toBe(true);
    expect(v.log.durableSeq).toBeGreaterThanOrEqual(2);
  });

  it('redo: unreleased log records are re-applied to the disk on open', async () => {
    const t = tmp();
    cleanups.push(t.cleanup);
    const { rt } = await fsRuntime(join(t.dir, 'store'));
    const cfg = volumeConfig(t.dir, 'r1');
    const v = await rt.openVolume(cfg, logger);
    await v.write(pattern(7, 64 * 1024), 0, { fua: true });
    await v.close();
    await rt.close();
    // Simulate a crash that lost disk writes: the log has records the disk does not.
    const log = await WriteLog.open(join(cfg.writeLog.dir, 'log'), { capacityBytes: cfg.writeLog.size, volumeId: 'r1' });
    await log.append(4 * MiB, pattern(9, 200_000));
    await log.appendZero(0, 4096);
    await log.sync();
    await log.close();
    const { rt: rt2 } = await fsRuntime(join(t.dir, 'store'));
    const v2 = await rt2.openVolume(cfg, logger);
    cleanups.push(async () => { await v2.close(); await rt2.close(); });
    const disk = readFileSync(cfg.disk);
    expect(disk.subarray(4 * MiB, 4 * MiB + 200_000).equals(pattern(9, 200_000))).toBe(true);
    expect(disk.subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    expect(disk.subarray(4096, 64 * 1024).equals(pattern(7, 64 * 1024).subarray(4096))).toBe(true);
  });
});

describe('stored volume: shadowing and snapshots', () => {
  it('the uploader shadows the volume; a snapshot equals the volume; the log is released', async () => {
    const { rt, storeDir, dir } = await setup();
    const v = rt.volumes.get('v1')!;
    for (let i = 0; i < 20; i++) await v.write(pattern(i, 50_000, i), i * 700_000, { fua: false });
    const g = await rt.coordinator.create(['v1']);
    const done = await rt.coordinator.wait(g.id, 60_000);
    expect(done.state, done.error ?? '').toBe('complete');
    const member = done.members[0]!;
    const img = await readBack(storeDir, member.snapshot!, join(dir, 'restored.img'));
    expect(img.equals(readFileSync(join(dir, 'v1.img')))).toBe(true);
    await until(() => v.log.newestSeq === v.log.releasedSeq, 60_000, 'log released');
    expect((await listGroups(rt.store)).map((x) => x.id)).toEqual([g.id]);
  });

  it('point in time: pattern A, snapshot, overwrite with B while uploading -> the snapshot is all A', async () => {
    const { rt, storeDir, dir, faults } = await setup({ faults: true });
    const v = rt.volumes.get('v1')!;
    const size = v.size;
    await v.write(pattern(0xa0, size), 0, { fua: false });
    // Slow block puts so the overwrite happens while the snapshot uploads.
    faults!.addRule({ ops: ['put'], keyPrefix: 'blocks/', action: 'delay', latencyMs: 20 });
    const g = await rt.coordinator.create(['v1']);
    for (let off = 0; off < size; off += 256 * 1024) await v.write(pattern(0xb0, 256 * 1024, off), off, { fua: false });
    const done = await rt.coordinator.wait(g.id, 120_000);
    expect(done.state, done.error ?? '').toBe('complete');
    const img = await readBack(storeDir, done.members[0]!.snapshot!, join(dir, 'pit.img'));
    expect(img.equals(pattern(0xa0, size))).toBe(true);
    // ...and the next shadow image is all B.
    await until(() => v.log.newestSeq === v.log.releasedSeq, 120_000, 'log drained');
    const latest = v.root!.id;
    const img2 = await readBack(storeDir, latest, join(dir, 'now.img'));
    expect(img2.equals(readFileSync(join(dir, 'v1.img')))).toBe(true);
  });

  it('multi-volume snapshot is all-or-nothing when one member fails', async () => {
    const { rt, storeDir } = await setup({ faults: true, volumes: ['a', 'b'] });
    const a = rt.volumes.get('a')!;
    const b = rt.volumes.get('b')!;
    await a.write(pattern(1, 300_000), 0, { fua: false });
    await b.write(pattern(2, 300_000), 0, { fua: false });
    await until(() => a.log.newestSeq === a.log.releasedSeq && b.log.newestSeq === b.log.releasedSeq, 60_000, 'initial shadow');
    await a.write(pattern(3, 300_000), 0, { fua: false });
    await b.write(pattern(4, 300_000), 0, { fua: false });
    // Volume b's upload sessions cannot start (access denied on b's session marker); a's succeed.
    let failing = true;
    const orig = rt.store.put.bind(rt.store);
    let seen = 0;
    (rt.store as { put: typeof rt.store.put }).put = async (key, body, opts) => {
      if (failing && key.startsWith('sessions/') && key.endsWith('.json') && !key.includes('.pending') && body.toString().includes('"volume":"b"')) {
        seen++;
        throw Object.assign(new Error('injected: access denied'), {});
      }
      return orig(key, body, opts);
    };
    const g = await rt.coordinator.create(['a', 'b']);
    const done = await rt.coordinator.wait(g.id, 60_000);
    expect(done.state).toBe('failed');
    expect(seen).toBeGreaterThan(0);
    expect(await listGroups(rt.store)).toEqual([]);
    failing = false;
    // Shadowing continues; the failed set's member roots are gone (except a current parent, removed when superseded).
    await until(() => a.log.newestSeq === a.log.releasedSeq && b.log.newestSeq === b.log.releasedSeq, 60_000, 'shadow after failure');
    await a.write(pattern(5, 1000), 0, { fua: false });
    await until(() => a.log.newestSeq === a.log.releasedSeq, 60_000, 'a superseded');
    // A superseded root is deleted in the background after the new one commits.
    const snaps = new SnapshotStore(await FsObjectStore.open(storeDir));
    const leftovers = async (): Promise<unknown[]> => (await snaps.list()).filter((r) => (r.description ?? '').includes(g.id));
    await until(async () => (await leftovers()).length === 0, 30_000, 'failed set member roots removed');
    expect(await leftovers()).toEqual([]);
  });

  it('a member whose earlier (auto) upload is failing fails the set at once, not after the outage', async () => {
    const { rt } = await setup({ volumes: ['a', 'b'] });
    const a = rt.volumes.get('a')!;
    const b = rt.volumes.get('b')!;
    await a.write(pattern(1, 300_000), 0, { fua: false });
    await b.write(pattern(2, 300_000), 0, { fua: false });
    await until(() => a.log.newestSeq === a.log.releasedSeq && b.log.newestSeq === b.log.releasedSeq, 60_000, 'initial shadow');
    // From now on b's upload sessions cannot start; b gets data behind an auto marker, so the set's
    // marker for b queues behind an upload that keeps failing.
    let failing = true;
    const orig = rt.store.put.bind(rt.store);
    (rt.store as { put: typeof rt.store.put }).put = async (key, body, opts) => {
      if (failing && key.startsWith('sessions/') && body.toString().includes('"volume":"b"')) throw new Error('injected: access denied');
      return orig(key, body, opts);
    };
    await b.write(pattern(4, 300_000), 0, { fua: false });
    await b.appendMarker({ kind: 'auto' });
    const g = await rt.coordinator.create(['a', 'b']);
    const done = await rt.coordinator.wait(g.id, 60_000);
    failing = false;
    expect(done.state).toBe('failed');
    expect(done.error).toMatch(/uploading volume b failed: injected: access denied/);
  });
});

describe('stored volume: outages and backpressure', () => {
  it('store unreachable: writes keep succeeding, uploads resume by themselves', async () => {
    const { rt, faults, storeDir, dir } = await setup({ faults: true });
    const v = rt.volumes.get('v1')!;
    const outage = faults!.addRule({ action: 'fail', error: 'unavailable' });
    for (let i = 0; i < 30; i++) await v.write(pattern(i, 100_000), i * 300_000, { fua: i % 5 === 0 });
    await until(() => rt.uploaders.get('v1')!.status().state === 'retrying', 30_000, 'uploader retrying');
    expect(v.log.newestSeq).toBeGreaterThan(v.log.releasedSeq);
    expect(rt.details('v1')!.upload.lagSeconds).toBeGreaterThanOrEqual(0);
    faults!.removeRule(outage);
    await until(() => v.log.newestSeq === v.log.releasedSeq, 120_000, 'uploads resumed and drained');
    const img = await readBack(storeDir, v.root!.id, join(dir, 'after-outage.img'));
    expect(img.equals(readFileSync(join(dir, 'v1.img')))).toBe(true);
  });

  it('log full: writes wait (never fail), then complete once the store is back', async () => {
    const { rt, faults } = await setup({ faults: true, over: { logSize: 2 * MiB } });
    const v = rt.volumes.get('v1')!;
    // Let the initial shadow finish first: an upload already in flight when the outage starts could
    // still commit and free log space, which is not what this test is about.
    await until(() => v.log.newestSeq === v.log.releasedSeq && rt.uploaders.get('v1')!.status().state === 'idle', 60_000, 'initial shadow idle');
    const outage = faults!.addRule({ action: 'fail', error: 'unavailable' });
    const writes: Array<Promise<void>> = [];
    let completed = 0;
    for (let i = 0; i < 12; i++) writes.push(v.write(pattern(i, 256 * 1024), i * 256 * 1024, { fua: false }).then(() => { completed++; }));
    // Settled: every write is either acknowledged or waiting for log space (writes admitted
    // before the log filled still complete after the first waiter appears).
    await until(() => v.log.usage().waitingWriters > 0 && completed + v.log.usage().waitingWriters === 12, 30_000, 'every write acknowledged or waiting for log space');
    const stuck = completed;
    expect(stuck).toBeLessThan(12);
    // While the uploader keeps hitting the outage (two more refused store calls), no waiting write completes.
    const failed = Object.values(faults!.injected).reduce((x, y) => x + y, 0);
    await until(() => Object.values(faults!.injected).reduce((x, y) => x + y, 0) >= failed + 2, 60_000, 'the uploader to retry against the outage');
    expect(completed).toBe(stuck);
    faults!.removeRule(outage);
    await Promise.all(writes);
    expect(completed).toBe(12);
    expect(rt.details('v1')!.log.backpressureWaits).toBeGreaterThan(0);
  });
});

describe('stored volume: scheduled snapshots', () => {
  it('takes a snapshot every interval and keeps the newest N', async () => {
    const { rt } = await setup({ over: { snapshots: { intervalMs: 1000, keep: 2 } } });
    const v = rt.volumes.get('v1')!;
    let i = 0;
    const writer = setInterval(() => void v.write(pattern(i++, 4096), (i % 100) * 65536, { fua: false }).catch(() => undefined), 100);
    try {
      await until(async () => (await rt.coordinator.list('v1')).filter((s) => s.origin === 'schedule' && s.state === 'complete').length >= 2 && i > 40, 120_000, 'scheduled snapshots');
      await until(async () => (await listGroups(rt.store)).length === 2 && i > 60, 120_000, 'retention at keep=2');
    } finally {
      clearInterval(writer);
    }
    const visible = await listGroups(rt.store);
    expect(visible.length).toBe(2);
    expect(visible.every((g) => g.origin === 'schedule')).toBe(true);
  });
});
