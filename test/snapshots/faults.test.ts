// Uploads under store faults: retried transient errors, a store that starts
// failing, and an uploader process SIGKILLed midway. In every case either a
// complete snapshot becomes visible or none does, and a rerun completes.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ErrorCodes, isBlockgateError } from '../../src/errors.js';
import { FaultInjectingObjectStore } from '../../src/object-store/fault.js';
import { RetryingObjectStore } from '../../src/object-store/retry.js';
import { CountingObjectStore } from '../../src/object-store/counting.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { SnapshotStore, collectGarbage, downloadSnapshot, uploadImage } from '../../src/snapshots/index.js';
import { ensureBuilt, repoRoot } from './build.js';
import { sha, writeImage } from './images.js';
import { start } from '../harness/process.js';
import { newestUnder, untilStoreClockPast } from './store-clock.js';
import { storeFactories, tempDir } from './stores.js';

const BS = 64 * 1024;

describe.each(storeFactories())('upload faults on $name store', (factory) => {
  let store: ObjectStore;
  let url: string;
  let env: Record<string, string>;
  let cleanup: () => Promise<void>;
  const dir = tempDir();

  beforeAll(async () => {
    ({ store, url, env, cleanup } = await factory.create());
  });
  afterAll(async () => { await cleanup(); rmSync(dir, { recursive: true, force: true }); });

  it('retries injected transient errors (including puts that landed but reported failure)', async () => {
    const fault = new FaultInjectingObjectStore(store, { seed: 7, rules: [
      { ops: ['put'], keyPrefix: 'blocks/', every: 3, action: 'fail', error: 'unavailable' },
      { ops: ['put'], keyPrefix: 'blocks/', every: 5, action: 'fail-after', error: 'timeout' },
      { ops: ['get', 'head'], every: 4, action: 'fail', error: 'throttled' },
      { ops: ['put'], keyPrefix: 'snapshots/', nth: 1, action: 'fail-after', error: 'unavailable' },
    ] });
    const retrying = new RetryingObjectStore(fault, { baseDelayMs: 1, maxDelayMs: 5 });
    const snaps = new SnapshotStore(retrying, { concurrency: 4 });
    const img = join(dir, 'retry.img');
    writeImage(img, BS * 40 + 99, BS, 'retry', (i) => i % 4 === 0);
    const up = await uploadImage(snaps, img, { volume: 'retry', blockSize: BS });
    const out = join(dir, 'retry.out');
    await downloadSnapshot(snaps, up.root.id, out);
    expect(sha(out)).toBe(sha(img));
    expect(fault.injected.put).toBeGreaterThan(5);
    expect(fault.injected.get + fault.injected.head).toBeGreaterThan(5);
  });

  it('a store that starts failing leaves no visible snapshot; a rerun completes and reuses what landed', async () => {
    const counting = new CountingObjectStore(store);
    const snaps = new SnapshotStore(counting, { concurrency: 4 });
    const img = join(dir, 'outage.img');
    writeImage(img, BS * 60, BS, 'outage');
    // 30 block puts go through, then every block put fails (non-retryable: surfaces at once)
    const before = await snaps.listIds();
    const failing = new FaultInjectingObjectStore(store, { rules: [{ ops: ['put'], keyPrefix: 'blocks/', every: 1, action: 'fail', error: 'denied' }] });
    let allowed = 30;
    const gate: ObjectStore = {
      location: store.location,
      get: (k, o) => store.get(k, o), head: (k, o) => store.head(k, o), delete: (k, o) => store.delete(k, o),
      list: (p, o) => store.list(p, o), close: async () => {},
      put: (k, b, o) => (k.startsWith('blocks/') && allowed-- <= 0 ? failing.put(k, b, o) : store.put(k, b, o)),
    };
    await expect(uploadImage(new SnapshotStore(gate, { concurrency: 4 }), img, { volume: 'outage', blockSize: BS }))
      .rejects.toSatisfy((e: unknown) => isBlockgateError(e, ErrorCodes.STORE_ACCESS_DENIED));
    expect(await snaps.listIds()).toEqual(before);
    const markers = [];
    for await (const o of store.list('sessions/')) markers.push(o.key);
    expect(markers).toEqual([]); // aborted session removed its markers
    counting.reset();
    const up = await uploadImage(snaps, img, { volume: 'outage', blockSize: BS });
    // the rerun found the ~30 blocks that landed and did not send them again
    expect(counting.snapshot().put.bytesOut).toBeLessThan(BS * 60 * 0.7);
    const out = join(dir, 'outage.out');
    await downloadSnapshot(snaps, up.root.id, out);
    expect(sha(out)).toBe(sha(img));
  });

  it('an uploader SIGKILLed midway leaves no visible snapshot; a rerun completes; gc reclaims the leftovers', async () => {
    ensureBuilt();
    const img = join(dir, 'kill.img');
    writeImage(img, BS * 120, BS, 'kill');
    const script = `
      const { openObjectStore } = await import(${JSON.stringify(join(repoRoot, 'dist/object-store/open.js'))});
      const { FaultInjectingObjectStore } = await import(${JSON.stringify(join(repoRoot, 'dist/object-store/fault.js'))});
      const { SnapshotStore, uploadImage } = await import(${JSON.stringify(join(repoRoot, 'dist/snapshots/index.js'))});
      const inner = await openObjectStore(process.env.STORE_URL);
      const slow = new FaultInjectingObjectStore(inner, { rules: [{ ops: ['put'], keyPrefix: 'blocks/', every: 1, action: 'delay', latencyMs: 40 }] });
      const snaps = new SnapshotStore(slow, { concurrency: 2 });
      await uploadImage(snaps, process.env.IMAGE, { volume: 'kill', blockSize: ${BS}, onProgress: (p) => process.stdout.write('changed ' + p.changedBlocks + '\\n') });
      process.stdout.write('DONE\\n');
    `;
    const child = start(process.execPath, ['--input-type=module', '-e', script], { env: { ...env, STORE_URL: url, IMAGE: img } });
    // Killed once it has uploaded 40..99 changed blocks (of 120).
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`child made no progress: ${child.output()}`)), 60_000);
      const done = (err?: Error): void => { clearTimeout(t); stop(); if (err) rej(err); else res(); };
      const stop = child.onData(() => {
        const out = child.stdout();
        if (/changed (4\d|[5-9]\d)\n/.test(out)) done();
        else if (out.includes('DONE')) done(new Error('child finished before it was killed'));
      });
      void child.exited.then((r) => done(new Error(`child exited (${r.code ?? r.signal}) before it was killed: ${child.output()}`)));
    });
    await child.kill();
    expect((await child.exited).signal).toBe('SIGKILL');

    const snaps = new SnapshotStore(store, { staleMs: 1500 });
    expect((await snaps.list()).filter((r) => r.volume === 'kill')).toEqual([]);
    let orphans = 0;
    for await (const o of store.list('sessions/')) { void o; orphans++; }
    expect(orphans).toBeGreaterThan(0); // the dead session's markers are still there

    const up = await uploadImage(snaps, img, { volume: 'kill' });
    const restored = join(dir, 'kill.out');
    await downloadSnapshot(snaps, up.root.id, restored);
    expect(sha(restored)).toBe(sha(img));

    // The dead session goes stale once the store's clock is staleMs past its last heartbeat.
    await untilStoreClockPast(store, (await newestUnder(store, 'sessions/')) + 1500);
    const gc = await collectGarbage(snaps, { graceMs: 0 });
    expect(gc.staleSessions).toBeGreaterThan(0);
    await downloadSnapshot(snaps, up.root.id, restored);
    expect(sha(restored)).toBe(sha(img));
  });
});
