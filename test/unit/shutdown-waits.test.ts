// The waits a shutdown must be able to end (issue #11 item 4), one layer at a
// time; test/daemon/shutdown.test.ts drives the whole daemon:
//   - WriteLog.refuseAppends(): appends waiting for space fail SHUTTING_DOWN,
//     admitted records are still written and synced; close() is one promise;
//   - StoredVolume/CachedVolume.close() with a write waiting for log space
//     (no uploader frees it): the write fails SHUTTING_DOWN and close ends
//     (before the fix it waited for that write forever);
//   - AbortableObjectStore: abort() ends an operation stuck in a retry loop
//     (in a backoff sleep, or in an attempt that never answers) at once, and
//     refuses later ones without reaching the store.
// Hang detectors (bounded waits that fail the test) stand in for "forever".
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../../src/errors.js';
import { AbortableObjectStore } from '../../src/object-store/abortable.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { abortError } from '../../src/object-store/keys.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from '../../src/object-store/object-store.js';
import { RetryingObjectStore } from '../../src/object-store/retry.js';
import { SnapshotStore } from '../../src/snapshots/index.js';
import { CachedVolume } from '../../src/volumes/cached/cached-volume.js';
import { StoredVolume } from '../../src/volumes/stored/stored-volume.js';
import { recordBytes } from '../../src/write-log/format.js';
import { WriteLog } from '../../src/write-log/write-log.js';
import { SimDisk } from '../write-log/sim-disk.js';

const MiB = 1024 * 1024;
const HANG_MS = 20_000;
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'bg-shutdown-waits-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `p`'s outcome, or a test failure naming `what` when it has not settled after HANG_MS. */
async function settles<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, rej) => { timer = setTimeout(() => rej(new Error(`${what} did not settle within ${HANG_MS} ms`)), HANG_MS); });
  try {
    return await Promise.race([p, hang]);
  } finally {
    clearTimeout(timer);
  }
}

function codeOf(err: unknown): string | undefined {
  return isBlockgateError(err) ? err.code : `not a BlockgateError: ${String(err)}`;
}

/** Lets every pending promise job and immediate run (no timer involved). */
async function quiesce(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
}

/** A 16 KiB log filled with 4000-byte writes (the first holds bytes 0x01), and one more write waiting for space. */
async function fullLogWithOneWaiter(): Promise<{ wl: WriteLog; blocked: Promise<string | undefined> }> {
  const wl = await WriteLog.open('/log', { capacityBytes: 16 << 10, segmentBytes: 8 << 10, volumeId: 'v', io: new SimDisk() });
  cleanups.push(() => wl.close());
  let n = 0;
  while (wl.usage().usedBytes + recordBytes(4000) <= 16 << 10) await wl.append(n++ * 4000, Buffer.alloc(4000, n));
  const blocked = wl.append(0, Buffer.alloc(4000, 0xee)).then(() => 'acknowledged', (e: unknown) => codeOf(e));
  await quiesce();
  expect(wl.usage().waitingWriters).toBe(1);
  return { wl, blocked };
}

describe('WriteLog.refuseAppends', () => {
  it('fails waiting and later appends with SHUTTING_DOWN; admitted records stay readable and sync', async () => {
    const { wl, blocked } = await fullLogWithOneWaiter();
    wl.refuseAppends();
    expect(await blocked).toBe(ErrorCodes.SHUTTING_DOWN);
    expect(wl.usage().waitingWriters).toBe(0);
    expect(() => wl.append(0, Buffer.alloc(1))).toThrow(BlockgateError);
    expect(() => wl.appendMarker({ kind: 'auto' })).toThrow(/closing/);
    // What was admitted is still there, readable and syncable, until close().
    const back = Buffer.alloc(4000);
    await wl.readDirty(0, 4000, back);
    expect(back.equals(Buffer.alloc(4000, 1))).toBe(true);
    expect(await wl.sync()).toBe(wl.newestSeq);
    const a = wl.close();
    expect(wl.close()).toBe(a); // one close, however many callers
    await a;
  });
});

describe('WriteLog.refuseSpaceWaits (what a closing volume calls)', () => {
  it('fails appends that lack segment space, now and later; appends that fit are still admitted', async () => {
    const { wl, blocked } = await fullLogWithOneWaiter();
    wl.refuseSpaceWaits();
    expect(await blocked).toBe(ErrorCodes.SHUTTING_DOWN);
    const later = await wl.append(0, Buffer.alloc(4000, 0xdd)).then(() => 'acknowledged', (e: unknown) => codeOf(e));
    expect(later).toBe(ErrorCodes.SHUTTING_DOWN);
    // A record that fits (here: a small one in the space that is left) is admitted and acknowledged.
    const room = (16 << 10) - wl.usage().usedBytes;
    expect(room).toBeGreaterThanOrEqual(recordBytes(16));
    expect(await wl.append(0, Buffer.alloc(16, 0xcc))).toBe(wl.newestSeq);
    expect(wl.usage().waitingWriters).toBe(0);
  });
});

describe('volume close() with a write waiting for log space', () => {
  it('stored: the write fails SHUTTING_DOWN and close() ends', async () => {
    const dir = tmp();
    const store = await FsObjectStore.open(join(dir, 'store'));
    cleanups.push(() => store.close());
    const vol = await StoredVolume.open({
      name: 'v', disk: join(dir, 'disk.img'), size: 64 * MiB, logDir: join(dir, 'log'), logCapacityBytes: 4 * MiB, blockSize: 64 * 1024,
      snaps: new SnapshotStore(store),
    });
    const blocked = await fillUntilBlocked(vol, () => vol.log.usage().waitingWriters);
    await settles(vol.close(), 'StoredVolume.close()');
    expect(await settles(blocked.outcome, 'the blocked write')).toBe(ErrorCodes.SHUTTING_DOWN);
  });

  it('cached: the write fails SHUTTING_DOWN and close() ends', async () => {
    const dir = tmp();
    const store = await FsObjectStore.open(join(dir, 'store'));
    cleanups.push(() => store.close());
    const vol = await CachedVolume.open({
      name: 'v', size: 64 * MiB, blockSize: 64 * 1024, logDir: join(dir, 'log'), logCapacityBytes: 4 * MiB,
      cacheDir: join(dir, 'cache'), cacheCapacityBytes: 4 * MiB, store, snaps: new SnapshotStore(store), leaseRenewMs: 0,
    });
    const blocked = await fillUntilBlocked(vol, () => vol.log.usage().waitingWriters);
    await settles(vol.close(), 'CachedVolume.close()');
    expect(await settles(blocked.outcome, 'the blocked write')).toBe(ErrorCodes.SHUTTING_DOWN);
  });
});

/** 256 KiB writes (no uploader runs, so nothing frees space) until one waits for space; resolves that write's outcome. */
async function fillUntilBlocked(vol: StoredVolume | CachedVolume, waiting: () => number): Promise<{ outcome: Promise<string | undefined> }> {
  for (let i = 0; i < 64; i++) {
    let settled = false;
    const w = vol.write(Buffer.alloc(256 * 1024, i + 1), i * 256 * 1024, { fua: false })
      .then(() => 'acknowledged', (e: unknown) => codeOf(e))
      .finally(() => { settled = true; });
    // Either it completes (file I/O) or the log counts it as waiting: whichever comes first.
    for (let k = 0; k < HANG_MS / 5 && !settled && waiting() === 0; k++) await new Promise((r) => setTimeout(r, 5));
    if (!settled) {
      expect(waiting()).toBe(1);
      return { outcome: w }; // wrapped: an async function returning `w` itself would wait for it
    }
    expect(await w).toBe('acknowledged');
  }
  throw new Error('the write log never filled');
}

/** An S3 stand-in that is down: every attempt fails retryably, or (blackhole) never answers until aborted. */
class DownStore implements ObjectStore {
  readonly location = 'test://down';
  calls = 0;
  constructor(private readonly mode: 'refuse' | 'blackhole') {}
  private attempt<T>(signal: AbortSignal | undefined): Promise<T> {
    this.calls++;
    if (this.mode === 'refuse') return Promise.reject(new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, 'connect ECONNREFUSED', { retryable: true }));
    return new Promise<T>((_, rej) => signal?.addEventListener('abort', () => rej(abortError(signal, 'attempt')), { once: true }));
  }
  get(_key: string, o: GetOptions = {}): Promise<GetResult> { return this.attempt(o.signal); }
  head(_key: string, o: { signal?: AbortSignal } = {}): Promise<ObjectInfo> { return this.attempt(o.signal); }
  put(_key: string, _body: Buffer, o: PutOptions = {}): Promise<{ etag: string }> { return this.attempt(o.signal); }
  delete(_key: string, o: { signal?: AbortSignal } = {}): Promise<void> { return this.attempt(o.signal); }
  async *list(_prefix: string, o: ListOptions = {}): AsyncIterable<ObjectInfo> { yield await this.attempt<ObjectInfo>(o.signal); }
  async close(): Promise<void> { /* nothing */ }
}

describe('AbortableObjectStore over a retrying store that cannot reach the server', () => {
  for (const mode of ['refuse', 'blackhole'] as const) {
    it(`${mode}: abort() ends operations in flight at once and refuses later ones`, async () => {
      const down = new DownStore(mode);
      // Long backoff and attempt timeout: without the abort each call would take minutes.
      const store = new AbortableObjectStore(new RetryingObjectStore(down, { maxAttempts: 100, baseDelayMs: 60_000, maxDelayMs: 60_000, attemptTimeoutMs: 600_000, deadlineMs: 3_600_000, random: () => 1 }));
      const inFlight = [
        store.put('k', Buffer.from('x')).catch((e: unknown) => e),
        store.get('k').catch((e: unknown) => e),
        (async () => { for await (const _ of store.list('p/')) { /* nothing */ } })().catch((e: unknown) => e),
      ];
      await quiesce();
      expect(down.calls).toBeGreaterThanOrEqual(3); // each made its first attempt and now sleeps or waits
      store.abort('test: shutting down');
      for (const err of await settles(Promise.all(inFlight), 'operations after abort()')) {
        expect(codeOf(err)).toBe(ErrorCodes.SHUTTING_DOWN);
        expect(String((err as Error).message)).toMatch(/shutting down/);
      }
      const calls = down.calls;
      await expect(store.head('k')).rejects.toMatchObject({ code: ErrorCodes.SHUTTING_DOWN });
      await expect(store.delete('k')).rejects.toMatchObject({ code: ErrorCodes.SHUTTING_DOWN });
      expect(down.calls).toBe(calls); // refused without reaching the store
    });
  }
});
