// CachedVolume.extents() against a live root that moves while it runs: a
// block status that started with the old root must not combine it with a
// log the new root's commit has already released (the same invariant reads
// keep: docs/cached-volumes.md, "every read that started with the previous
// root has finished" before the log is released). Before the fix, extents()
// was not counted as a reader: a block written after root 1 (only in the
// log) was reported as a hole once root 2 committed and the log let go of it.
import { afterEach, describe, expect, it } from 'vitest';

import { FsObjectStore } from '../../src/object-store/fs.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import type { CachedRuntime } from '../../src/volumes/cached/runtime.js';
import { KiB, MiB, logger, pattern, runtime, tmp, until, volumeConfig } from '../cached/helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** `inner`, except that once armed the first get of a shard object waits until released. */
function gatedStore(inner: ObjectStore): { store: ObjectStore; arm(): void; held: () => boolean; release(): void } {
  let armed = false;
  let held = false;
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const store = new Proxy(inner, {
    get(target, prop) {
      if (prop === 'get') {
        return async (key: string, ...rest: unknown[]) => {
          if (armed && key.startsWith('shards/')) {
            armed = false;
            held = true;
            await gate;
          }
          return (target.get as (k: string, ...r: unknown[]) => unknown).call(target, key, ...rest);
        };
      }
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
  return { store, arm: () => { armed = true; }, held: () => held, release: () => open() };
}

async function shutdown(rt: CachedRuntime): Promise<void> {
  await rt.stopBackground();
  for (const v of rt.volumes.values()) await v.close();
}

describe('cached volume: extents while the live root moves', () => {
  it('a block only in the log is never reported as a hole, even when root 2 commits (and releases the log) mid-call', async () => {
    const t = tmp('bg-cached-extents-');
    cleanups.push(t.cleanup);
    const fs = await FsObjectStore.open(`${t.dir}/store`);
    cleanups.push(() => fs.close());
    const cfg = volumeConfig(t.dir, 'x1', { blockSize: 64 * KiB, size: 4 * MiB, uploadIntervalMs: 10 });

    // Root 1: block 0 only.
    const rt1 = runtime(fs, `${t.dir}/data`);
    const v1 = await rt1.openVolume(cfg, logger);
    await rt1.start();
    await v1.write(pattern(1, 64 * KiB), 0, { fua: true });
    await until(() => v1.log.newestSeq <= v1.log.releasedSeq, 60_000, 'root 1 committed');
    await shutdown(rt1);

    // Reopen over a gated store (a fresh SnapshotStore: no shard is cached yet).
    const g = gatedStore(fs);
    const rt2 = runtime(g.store, `${t.dir}/data`);
    cleanups.push(() => shutdown(rt2));
    const vol = await rt2.openVolume(cfg, logger);
    const root1 = vol.liveRoot!.id;
    await vol.write(pattern(2, 64 * KiB), 64 * KiB, { fua: true }); // block 1: in the log only

    g.arm();
    const extents = vol.extents(64 * KiB, 64 * KiB); // holds root 1; waits for its shard
    await until(g.held, 10_000, 'extents waiting for the shard');
    await rt2.start(); // the uploader commits root 2 (with block 1) and wants to release the log
    await until(() => vol.liveRoot!.id !== root1, 60_000, 'root 2 committed');
    // Either the log was released under the running extents() (the bug), or the
    // commit waits for it as for any reader started with root 1.
    const waitsForReaders = (): boolean => (vol as unknown as { readerWaiters: unknown[] }).readerWaiters.length > 0;
    await until(() => vol.log.newestSeq <= vol.log.releasedSeq || waitsForReaders(), 60_000, 'log released or commit waiting for readers');
    g.release();
    expect(await extents).toEqual([{ length: 64 * KiB, hole: false, zero: false }]);
    await until(() => vol.log.newestSeq <= vol.log.releasedSeq, 60_000, 'log released after extents() finished');
    // And from root 2 alone: still data.
    expect(await vol.extents(64 * KiB, 64 * KiB)).toEqual([{ length: 64 * KiB, hole: false, zero: false }]);
  });
});
