// The object store's clock, as GC reads it: the lastModified of an object
// written now (1 s granularity on the fs store and S3). Tests that need "time
// has passed" for GC (grace periods, stale sessions) wait for this clock to
// move, instead of sleeping and hoping it did.
import type { ObjectStore } from '../../src/object-store/object-store.js';

const PROBE = 'test-store-clock-probe';

/** The store's clock now (ms): lastModified of a probe object put now (removed again). */
export async function storeNow(store: ObjectStore): Promise<number> {
  await store.put(PROBE, Buffer.from('tick'));
  try {
    return (await store.head(PROBE)).lastModified.getTime();
  } finally {
    await store.delete(PROBE);
  }
}

/** Waits (bounded, polling every 100 ms) until the store's clock is past `t` (ms). */
export async function untilStoreClockPast(store: ObjectStore, t: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if ((await storeNow(store)) > t) return;
    if (Date.now() > deadline) throw new Error(`the store's clock did not pass ${new Date(t).toISOString()} within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Waits until an object written from now on is strictly newer, by the store's clock, than everything written before. */
export async function storeClockTick(store: ObjectStore): Promise<void> {
  await untilStoreClockPast(store, await storeNow(store));
}

/** The newest lastModified (ms) under `prefix`, 0 when there is nothing. */
export async function newestUnder(store: ObjectStore, prefix: string): Promise<number> {
  let newest = 0;
  for await (const o of store.list(prefix)) newest = Math.max(newest, o.lastModified.getTime());
  return newest;
}
