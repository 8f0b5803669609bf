// ChunkCache: LRU order and cap against a model (seeded), single-flight
// misses, failed fetches, restart warmth, corruption and header damage,
// pins, prefetch accounting, argument errors. Blocks come from an in-memory
// map that counts fetches; every byte returned is compared with the source.
import { openSync, readSync, writeSync, closeSync, cpSync, mkdirSync, rmSync, truncateSync, writeFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { Level } from 'level';
import { afterEach, describe, expect, it } from 'vitest';
import { ChunkCache, type ChunkCacheOptions } from '../../src/chunk-cache/index.js';
import { CACHE_FORMAT_VERSION, HEADER_BYTES, META_KEY, UNIT_BYTES } from '../../src/chunk-cache/format.js';
import { Logger } from '../../src/log.js';
import { ErrorCodes } from '../../src/errors.js';
import { BlockSource, KiB, mulberry32, noFetch, tempDirs } from './helpers.js';

const BS = 64 * KiB;
const tmp = tempDirs();
const open: ChunkCache[] = [];
afterEach(async () => {
  await Promise.allSettled(open.splice(0).map((c) => c.close()));
  tmp.cleanup();
});

async function openCache(o: Partial<ChunkCacheOptions> & { dir: string }): Promise<ChunkCache> {
  const c = await ChunkCache.open({ blockSize: BS, capacityBytes: 16 * BS, ...o });
  open.push(c);
  return c;
}

/** Flips one byte of a file in place. */
function flipByte(file: string, position: number): void {
  const fd = openSync(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, position);
    b[0] = b[0]! ^ 0x5a;
    writeSync(fd, b, 0, 1, position);
  } finally {
    closeSync(fd);
  }
}

describe('ChunkCache: LRU and cap', () => {
  it('follows the LRU model exactly with a working set 4x the cache; every byte verified (seeded)', async () => {
    const SLOTS = 16;
    const src = new BlockSource();
    const keys = src.fill(4 * SLOTS, BS, 1234, 5); // every 5th block is short (a volume's last block)
    const cache = await openCache({ dir: tmp.make(), capacityBytes: SLOTS * BS + BS - 1 });
    expect(cache.slots).toBe(SLOTS);
    const rnd = mulberry32(99);
    const model: string[] = []; // least recently used first
    let modelHits = 0;
    let modelEvictions = 0;
    const OPS = 1500;
    for (let op = 0; op < OPS; op++) {
      const key = rnd() < 0.6 ? keys[Math.floor(rnd() * 8)]! : keys[Math.floor(rnd() * keys.length)]!;
      const want = src.blocks.get(key)!;
      const fetchesBefore = src.total;
      if (rnd() < 0.3) {
        // Partial read into a caller buffer at a random offset and length.
        const off = Math.floor(rnd() * (want.length + 1));
        const target = Buffer.alloc(Math.floor(rnd() * (BS + 1)));
        const n = await cache.read(key, src.fetcher(key), target, off);
        expect(n).toBe(Math.max(0, Math.min(target.length, want.length - off)));
        expect(target.subarray(0, n).equals(want.subarray(off, off + n))).toBe(true);
      } else {
        expect((await cache.get(key, src.fetcher(key))).equals(want)).toBe(true);
      }
      const pos = model.indexOf(key);
      if (pos >= 0) {
        modelHits++;
        model.splice(pos, 1);
        expect(src.total, `op ${op}: ${key} should be a hit`).toBe(fetchesBefore);
      } else {
        expect(src.total, `op ${op}: ${key} should be a miss`).toBe(fetchesBefore + 1);
        if (model.length === SLOTS) { model.shift(); modelEvictions++; }
      }
      model.push(key);
      await cache.flush(); // slot writes done, so the model's victim is evictable
      const st = cache.stats();
      expect(st.entries).toBeLessThanOrEqual(SLOTS);
      expect(st.bytesCached).toBeLessThanOrEqual(st.capacityBytes);
    }
    for (const k of keys) expect(cache.has(k), k).toBe(model.includes(k));
    const st = cache.stats();
    expect(st).toMatchObject({ hits: modelHits, misses: OPS - modelHits, fetches: OPS - modelHits, evictions: modelEvictions, entries: SLOTS });
    expect(st.hitRatio).toBeCloseTo(modelHits / OPS, 10);
    expect(modelEvictions).toBeGreaterThan(300); // the test did exercise eviction
    expect(modelHits).toBeGreaterThan(300);
  });

  it('returns the right bytes and stays within the cap with concurrent readers (seeded)', async () => {
    const SLOTS = 16;
    const src = new BlockSource();
    const keys = src.fill(4 * SLOTS, BS, 77, 3);
    const rnd = mulberry32(5);
    src.delayMs = () => Math.floor(rnd() * 3);
    const cache = await openCache({ dir: tmp.make(), capacityBytes: SLOTS * BS, maxPendingWrites: 4 });
    const worker = async (seed: number): Promise<void> => {
      const r = mulberry32(seed);
      for (let i = 0; i < 250; i++) {
        const key = r() < 0.5 ? keys[Math.floor(r() * 10)]! : keys[Math.floor(r() * keys.length)]!;
        const got = await cache.get(key, src.fetcher(key));
        expect(got.equals(src.blocks.get(key)!)).toBe(true);
        expect(cache.stats().entries).toBeLessThanOrEqual(SLOTS);
      }
    };
    await Promise.all([1, 2, 3, 4, 5, 6].map(worker));
    await cache.flush();
    const st = cache.stats();
    expect(st.hits + st.misses).toBe(1500);
    expect(st.fetches).toBe(src.total);
    expect(st.fetches).toBeLessThanOrEqual(st.misses);
    expect(st.hits).toBeGreaterThan(200);
    expect(st.entries).toBeLessThanOrEqual(SLOTS);
    expect(st.pendingWrites).toBe(0);
    // Everything still cached reads back intact, without a fetch.
    for (const k of keys) if (cache.has(k)) expect((await cache.get(k, noFetch(k))).equals(src.blocks.get(k)!)).toBe(true);
  });
});

describe('ChunkCache: misses and fetches', () => {
  it('concurrent misses on one key share exactly one fetch', async () => {
    const cache = await openCache({ dir: tmp.make() });
    const src = new BlockSource();
    src.fill(1, BS, 3);
    src.delayMs = 20;
    const want = src.blocks.get('b0')!;
    const gets = Array.from({ length: 20 }, () => cache.get('b0', src.fetcher('b0')));
    const targets = Array.from({ length: 5 }, () => Buffer.alloc(1000));
    const reads = targets.map((t, i) => cache.read('b0', src.fetcher('b0'), t, i * 1000));
    for (const b of await Promise.all(gets)) expect(b.equals(want)).toBe(true);
    expect(await Promise.all(reads)).toEqual([1000, 1000, 1000, 1000, 1000]);
    targets.forEach((t, i) => expect(t.equals(want.subarray(i * 1000, i * 1000 + 1000))).toBe(true));
    expect(src.total).toBe(1);
    expect(cache.stats()).toMatchObject({ misses: 25, fetches: 1, hits: 0 });
    expect((await cache.get('b0', noFetch('b0'))).equals(want)).toBe(true);
  });

  it('a failed fetch fails every waiter, is not cached, and is retried by the next read', async () => {
    const cache = await openCache({ dir: tmp.make() });
    const src = new BlockSource();
    src.fill(1, BS, 4);
    src.delayMs = 5;
    src.failing.add('b0');
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => cache.get('b0', src.fetcher('b0'))));
    for (const r of results) expect(r.status === 'rejected' && String(r.reason)).toMatch(/fetch of b0 failed/);
    expect(src.total).toBe(1);
    await cache.flush();
    expect(cache.has('b0')).toBe(false);
    expect(cache.stats()).toMatchObject({ fetchErrors: 1, entries: 0, bytesCached: 0 });
    src.failing.delete('b0');
    expect((await cache.get('b0', src.fetcher('b0'))).equals(src.blocks.get('b0')!)).toBe(true);
    expect(src.total).toBe(2);
    expect((await cache.get('b0', noFetch('b0'))).equals(src.blocks.get('b0')!)).toBe(true);
  });

  it('a fetch that throws synchronously is not cached either', async () => {
    const cache = await openCache({ dir: tmp.make() });
    const boom = (): Promise<Buffer> => { throw new Error('sync boom'); };
    await expect(cache.get('k', boom)).rejects.toThrow('sync boom');
    await expect(cache.get('k', async () => Buffer.from('ok'))).resolves.toEqual(Buffer.from('ok'));
  });

  it('a fetch returning more than a block is an error and is not cached', async () => {
    const cache = await openCache({ dir: tmp.make() });
    await expect(cache.get('big', async () => Buffer.alloc(BS + 1))).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await cache.flush();
    expect(cache.has('big')).toBe(false);
  });
});

describe('ChunkCache: restart and damage', () => {
  it('a restart keeps warm entries and their LRU order', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    const keys = src.fill(10, BS, 8, 4);
    let cache = await openCache({ dir, capacityBytes: 8 * BS });
    for (const k of keys.slice(0, 8)) await cache.get(k, src.fetcher(k));
    await cache.get('b0', noFetch('b0')); // b0 is now the most recent, b1 the least
    await cache.close();

    cache = await openCache({ dir, capacityBytes: 8 * BS });
    expect(cache.stats()).toMatchObject({ entries: 8, resets: 0, bytesCached: keys.slice(0, 8).reduce((n, k) => n + src.blocks.get(k)!.length, 0) });
    await cache.get('b8', src.fetcher('b8')); // evicts the least recently used: b1
    await cache.flush();
    expect(cache.has('b1')).toBe(false);
    for (const k of ['b0', 'b2', 'b3', 'b4', 'b5', 'b6', 'b7', 'b8']) {
      expect((await cache.get(k, noFetch(k))).equals(src.blocks.get(k)!), k).toBe(true);
    }
    expect(src.total).toBe(9);
  });

  it('a smaller cap on reopen drops the slots beyond it and keeps the rest', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    const keys = src.fill(8, BS, 9);
    let cache = await openCache({ dir, capacityBytes: 8 * BS });
    for (const k of keys) await cache.get(k, src.fetcher(k));
    await cache.close();
    cache = await openCache({ dir, capacityBytes: 4 * BS });
    expect(cache.stats()).toMatchObject({ entries: 4, resets: 0 });
    for (const k of keys.slice(0, 4)) expect((await cache.get(k, noFetch(k))).equals(src.blocks.get(k)!)).toBe(true);
  });

  it('a corrupted slot is detected, dropped and refetched (live, partial reads verify only their units)', async () => {
    const BIG = 256 * KiB; // four 64 KiB checksum units
    const dir = tmp.make();
    const src = new BlockSource();
    src.fill(1, BIG, 10);
    const want = src.blocks.get('b0')!;
    const cache = await openCache({ dir, blockSize: BIG, capacityBytes: 4 * BIG });
    await cache.get('b0', src.fetcher('b0')); // first entry of a fresh cache: slot 0
    await cache.flush();
    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + 2 * UNIT_BYTES + 10); // damage unit 2

    const t = Buffer.alloc(UNIT_BYTES);
    expect(await cache.read('b0', noFetch('b0'), t, UNIT_BYTES)).toBe(UNIT_BYTES); // unit 1: intact, a hit
    expect(t.equals(want.subarray(UNIT_BYTES, 2 * UNIT_BYTES))).toBe(true);
    expect(await cache.read('b0', src.fetcher('b0'), t, 2 * UNIT_BYTES + 5)).toBe(UNIT_BYTES); // spans units 2-3: detected
    expect(t.equals(want.subarray(2 * UNIT_BYTES + 5, 3 * UNIT_BYTES + 5))).toBe(true);
    expect(src.total).toBe(2);
    expect(cache.stats()).toMatchObject({ checksumFailures: 1, hits: 1, misses: 2 });
    await cache.flush();
    expect((await cache.get('b0', noFetch('b0'))).equals(want)).toBe(true); // rewritten, whole and verified
  });

  it('a slot corrupted while the cache was closed is detected, dropped and refetched', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    const keys = src.fill(3, BS, 11);
    let cache = await openCache({ dir });
    for (const k of keys) await cache.get(k, src.fetcher(k)); // slots 0, 1, 2
    await cache.close();
    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + 1 * BS + BS - 1); // last byte of b1

    cache = await openCache({ dir });
    expect((await cache.get('b0', noFetch('b0'))).equals(src.blocks.get('b0')!)).toBe(true);
    expect((await cache.get('b1', src.fetcher('b1'))).equals(src.blocks.get('b1')!)).toBe(true);
    expect((await cache.get('b2', noFetch('b2'))).equals(src.blocks.get('b2')!)).toBe(true);
    expect(src.fetchesOf('b1')).toBe(2);
    expect(cache.stats().checksumFailures).toBe(1);
    await cache.close();
    cache = await openCache({ dir }); // the refetched copy was persisted
    expect((await cache.get('b1', noFetch('b1'))).equals(src.blocks.get('b1')!)).toBe(true);
  });

  const damages: Array<[string, (dir: string) => Promise<void> | void, Partial<ChunkCacheOptions>?]> = [
    ['slot file header byte flipped (torn header)', (dir) => flipByte(join(dir, 'slots.dat'), 13)],
    ['slot file truncated inside the header', (dir) => truncateSync(join(dir, 'slots.dat'), 20)],
    ['slot file emptied', (dir) => truncateSync(join(dir, 'slots.dat'), 0)],
    ['index header garbage', async (dir) => withIndex(dir, (db) => db.put(META_KEY, Buffer.from('garbage')))],
    ['index header missing', async (dir) => withIndex(dir, (db) => db.del(META_KEY))],
    ['index files corrupt', (dir) => { writeFileSync(join(dir, 'index', 'CURRENT'), 'MANIFEST-999999\n'); }],
    ['index directory deleted', (dir) => rmSync(join(dir, 'index'), { recursive: true })],
    ['slot file of another cache', async (dir) => {
      const other = tmp.make();
      await (await ChunkCache.open({ dir: other, blockSize: BS, capacityBytes: 16 * BS })).close();
      cpSync(join(other, 'slots.dat'), join(dir, 'slots.dat'));
    }],
    ['format version from the future (both copies, valid CRC)', async (dir) => {
      const h = readFileSync(join(dir, 'slots.dat')).subarray(0, 44);
      h.writeUInt32LE(CACHE_FORMAT_VERSION + 1, 4);
      h.writeUInt32LE(crc32c(h.subarray(0, 40)) >>> 0, 40);
      const fd = openSync(join(dir, 'slots.dat'), 'r+');
      writeSync(fd, h, 0, h.length, 0);
      closeSync(fd);
      await withIndex(dir, (db) => db.put(META_KEY, Buffer.from(h)));
    }],
    ['block size changed', () => {}, { blockSize: 2 * BS, capacityBytes: 8 * BS }],
  ];

  it.each(damages)('%s: the cache is reset cleanly and works (and stays warm) afterwards', async (_name, damage, reopenWith) => {
    const dir = tmp.make();
    const src = new BlockSource();
    const keys = src.fill(4, BS, 12);
    let cache = await openCache({ dir });
    for (const k of keys) await cache.get(k, src.fetcher(k));
    await cache.close();
    await damage(dir);

    cache = await openCache({ dir, ...reopenWith });
    expect(cache.stats()).toMatchObject({ resets: 1, entries: 0, bytesCached: 0 });
    for (const k of keys) {
      expect(cache.has(k)).toBe(false);
      expect((await cache.get(k, src.fetcher(k))).equals(src.blocks.get(k)!)).toBe(true);
    }
    expect(src.total).toBe(8);
    await cache.close();
    cache = await openCache({ dir, ...reopenWith });
    expect(cache.stats()).toMatchObject({ resets: 0, entries: 4 });
    for (const k of keys) expect((await cache.get(k, noFetch(k))).equals(src.blocks.get(k)!)).toBe(true);
  });

  it('garbage entry records and two records naming one slot are dropped at open', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    const keys = src.fill(4, BS, 13);
    let cache = await openCache({ dir });
    for (const k of keys) await cache.get(k, src.fetcher(k));
    await cache.close();
    await withIndex(dir, async (db) => {
      await db.put('e:junk', Buffer.from([1, 2, 3]));
      await db.put('e:copy-of-b2', (await db.get('e:b2'))!); // claims b2's slot too
    });
    cache = await openCache({ dir });
    expect(cache.stats().entries).toBe(3);
    expect(cache.has('b2')).toBe(false);
    expect(cache.has('copy-of-b2')).toBe(false);
    for (const k of ['b0', 'b1', 'b3']) expect((await cache.get(k, noFetch(k))).equals(src.blocks.get(k)!)).toBe(true);
  });
});

describe('ChunkCache: pins', () => {
  it('pinned entries survive eviction pressure; when every slot is pinned, misses are served but not cached', async () => {
    const src = new BlockSource();
    src.fill(60, BS, 14);
    const cache = await openCache({ dir: tmp.make(), capacityBytes: 4 * BS });
    cache.pin('b0'); // pinned before it is cached
    await cache.get('b0', src.fetcher('b0'));
    await cache.get('b1', src.fetcher('b1'));
    cache.pin('b1'); // pinned after
    cache.pin('b1'); // pins count
    for (let i = 2; i < 60; i++) {
      await cache.get(`b${i}`, src.fetcher(`b${i}`));
      expect(cache.has('b0') && cache.has('b1')).toBe(true);
      // The in-memory source answers without I/O; let the slot write land so
      // the next miss finds an evictable entry instead of skipping the insert.
      await cache.flush();
    }
    await cache.flush();
    expect(cache.stats().evictions).toBeGreaterThan(50);
    expect((await cache.get('b0', noFetch('b0'))).equals(src.blocks.get('b0')!)).toBe(true);
    expect((await cache.get('b1', noFetch('b1'))).equals(src.blocks.get('b1')!)).toBe(true);

    cache.pin('b58');
    cache.pin('b59'); // all four slots pinned now
    const before = cache.stats();
    for (let r = 0; r < 2; r++) expect((await cache.get('b2', src.fetcher('b2'))).equals(src.blocks.get('b2')!)).toBe(true);
    expect(cache.has('b2')).toBe(false);
    expect(cache.stats().insertsSkipped - before.insertsSkipped).toBe(2);
    expect(cache.stats().evictions).toBe(before.evictions);

    cache.unpin('b1');
    await cache.get('b3', src.fetcher('b3'));
    await cache.flush();
    expect(cache.has('b1')).toBe(true); // still pinned once
    expect(cache.has('b3')).toBe(false);
    cache.unpin('b1'); // now evictable (and the most recent of the evictable)
    await cache.get('b3', src.fetcher('b3'));
    await cache.flush();
    expect(cache.has('b1')).toBe(false);
    expect(cache.has('b3')).toBe(true);
    expect(() => cache.unpin('b1')).toThrow(expect.objectContaining({ code: ErrorCodes.INVALID_ARGUMENT }));
  });

  it('put() caches known data; a pinned put survives pressure', async () => {
    const src = new BlockSource();
    src.fill(20, BS, 15);
    const cache = await openCache({ dir: tmp.make(), capacityBytes: 2 * BS });
    cache.pin('dirty');
    const dirty = Buffer.alloc(BS, 7);
    expect(await cache.put('dirty', dirty)).toBe(true);
    for (let i = 0; i < 20; i++) await cache.get(`b${i}`, src.fetcher(`b${i}`));
    expect((await cache.get('dirty', noFetch('dirty'))).equals(dirty)).toBe(true);
    await expect(cache.put('x', Buffer.alloc(BS + 1))).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });
});

describe('ChunkCache: prefetch accounting', () => {
  it('counts prefetches used (hit or joined) and wasted (evicted unread, failed)', async () => {
    const src = new BlockSource();
    src.fill(6, BS, 16);
    const cache = await openCache({ dir: tmp.make(), capacityBytes: 2 * BS, maxPrefetches: 8 });
    await cache.prefetch('b0', src.fetcher('b0'));
    await cache.get('b0', noFetch('b0')); // used via a hit
    src.delayMs = 10;
    const p = cache.prefetch('b1', src.fetcher('b1'));
    await cache.get('b1', src.fetcher('b1')); // used by joining the in-flight prefetch
    await p;
    expect(src.fetchesOf('b1')).toBe(1);
    await cache.prefetch('b2', src.fetcher('b2'));
    await cache.flush();
    await cache.get('b3', src.fetcher('b3'));
    await cache.get('b4', src.fetcher('b4')); // b2 evicted unread
    src.failing.add('b5');
    await cache.prefetch('b5', src.fetcher('b5')); // never rejects
    await cache.prefetch('b4', noFetch('b4')); // cached: nothing to do
    expect(cache.stats()).toMatchObject({ prefetchIssued: 4, prefetchUsed: 2, prefetchWasted: 2, prefetchInFlight: 0 });
  });
});

describe('ChunkCache: format v2 (4 KiB checksum units) and the RWF_NOWAIT fast path', () => {
  const BIG = 512 * KiB; // the cached volumes' default block size: 128 units

  it('writes format version 2 with 4 KiB CRC32C units (header and entry records)', async () => {
    expect(CACHE_FORMAT_VERSION).toBe(2);
    expect(UNIT_BYTES).toBe(4096);
    const dir = tmp.make();
    const src = new BlockSource();
    src.fill(1, BIG, 30);
    src.blocks.set('short', src.blocks.get('b0')!.subarray(0, BIG - 1000)); // a short last block: its last unit is 3096 bytes
    const cache = await openCache({ dir, blockSize: BIG, capacityBytes: 4 * BIG });
    await cache.get('b0', src.fetcher('b0'));
    await cache.get('short', src.fetcher('short'));
    await cache.close();
    const h = readFileSync(join(dir, 'slots.dat')).subarray(0, 44);
    expect({ version: h.readUInt32LE(4), headerBytes: h.readUInt32LE(8), blockSize: h.readUInt32LE(12), unit: h.readUInt32LE(16), algo: h.readUInt32LE(20) })
      .toEqual({ version: 2, headerBytes: HEADER_BYTES, blockSize: BIG, unit: 4096, algo: 1 });
    await withIndex(dir, async (db) => {
      for (const k of ['b0', 'short']) {
        const data = src.blocks.get(k)!;
        const rec = (await db.get(`e:${k}`))!;
        const n = Math.ceil(data.length / 4096);
        expect(rec.length).toBe(16 + 4 * n);
        expect(rec.readUInt32LE(4)).toBe(data.length);
        for (let u = 0; u < n; u++) expect(rec.readUInt32LE(16 + 4 * u)).toBe(crc32c(data.subarray(u * 4096, (u + 1) * 4096)) >>> 0);
      }
    });
  });

  it('a version 1 cache (64 KiB units) is reset to an empty, cold cache with a clear warning, then refills', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    const keys = src.fill(3, BS, 31);
    await writeV1Cache(dir, BS, keys.map((k) => src.blocks.get(k)!), keys);
    const lines: string[] = [];
    const logger = new Logger({ level: 'info', write: (l) => { lines.push(l); } });
    let cache = await openCache({ dir, logger });
    expect(cache.stats()).toMatchObject({ resets: 1, entries: 0, bytesCached: 0 });
    const warns = lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((r) => r.level === 'warn');
    expect(warns).toHaveLength(1);
    expect(warns[0]).toMatchObject({ component: 'chunk-cache', msg: expect.stringMatching(/reset.*empty \(cold\)/) });
    expect(warns[0]!.reason).toMatch(/format version 1; this blockgate uses version 2 \(4096-byte checksum units\).*fetched again/);
    // Cold: every block is fetched again (the old slots are never trusted), then warm across a reopen.
    for (const k of keys) expect((await cache.get(k, src.fetcher(k))).equals(src.blocks.get(k)!)).toBe(true);
    expect(src.total).toBe(3);
    await cache.close();
    cache = await openCache({ dir });
    expect(cache.stats()).toMatchObject({ resets: 0, entries: 3 });
    for (const k of keys) expect((await cache.get(k, noFetch(k))).equals(src.blocks.get(k)!)).toBe(true);
  });

  it('a 4 KiB hit is served through RWF_NOWAIT and a unit corrupted under the open cache is still detected on it', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    src.fill(2, BIG, 32);
    const cache = await openCache({ dir, blockSize: BIG, capacityBytes: 4 * BIG });
    for (const k of ['b0', 'b1']) await cache.get(k, src.fetcher(k)); // slots 0 and 1, written through the page cache
    await cache.flush();
    const t = Buffer.alloc(4096);
    const nowait0 = cache.stats().nowaitReads;
    expect(await cache.read('b0', noFetch('b0'), t, 5 * 4096)).toBe(4096);
    expect(t.equals(src.blocks.get('b0')!.subarray(5 * 4096, 6 * 4096))).toBe(true);
    expect(cache.stats().nowaitReads).toBe(nowait0 + 1); // served synchronously from the page cache

    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + 7 * 4096 + 123); // b0, unit 7 (the page cache sees it at once)
    expect(await cache.read('b0', noFetch('b0'), t, 6 * 4096)).toBe(4096); // unit 6: intact, still a hit
    expect(await cache.read('b0', src.fetcher('b0'), t, 7 * 4096)).toBe(4096); // unit 7: detected, refetched
    expect(t.equals(src.blocks.get('b0')!.subarray(7 * 4096, 8 * 4096))).toBe(true);
    expect(cache.stats()).toMatchObject({ checksumFailures: 1, nowaitReads: nowait0 + 3 });
    expect(src.fetchesOf('b0')).toBe(2);
    expect(cache.has('b1')).toBe(true); // the neighbour slot is untouched
    expect(await cache.read('b1', noFetch('b1'), t, 7 * 4096)).toBe(4096);
    expect(t.equals(src.blocks.get('b1')!.subarray(7 * 4096, 8 * 4096))).toBe(true);
  });

  it('readNow serves page-cache hits synchronously (CRC-checked) and otherwise returns -1 having done nothing', async () => {
    const dir = tmp.make();
    const src = new BlockSource();
    src.fill(2, BIG, 36);
    const want = src.blocks.get('b0')!;
    const cache = await openCache({ dir, blockSize: BIG, capacityBytes: 4 * BIG });
    const t = Buffer.alloc(4096);
    expect(cache.readNow('b0', t, 0)).toBe(-1); // not cached: nothing fetched, nothing counted
    expect(cache.stats()).toMatchObject({ hits: 0, misses: 0, fetches: 0 });
    await cache.get('b0', src.fetcher('b0'));
    await cache.flush();
    expect(cache.readNow('b0', t, 3 * 4096)).toBe(4096);
    expect(t.equals(want.subarray(3 * 4096, 4 * 4096))).toBe(true);
    const odd = Buffer.alloc(5000);
    expect(cache.readNow('b0', odd, 4096 * 10 + 77)).toBe(5000); // unaligned: head and tail scratch units
    expect(odd.equals(want.subarray(4096 * 10 + 77, 4096 * 10 + 77 + 5000))).toBe(true);
    expect(cache.readNow('b0', Buffer.alloc(128 * KiB), 0)).toBe(-1); // above nowaitMax: the pool's job
    expect(cache.readNow('b0', t, BIG)).toBe(0); // at the end of the block
    expect(cache.stats()).toMatchObject({ hits: 3, checksumFailures: 0 });
    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + 20 * 4096);
    expect(cache.readNow('b0', t, 20 * 4096)).toBe(-1); // damaged: dropped, not served
    expect(cache.stats().checksumFailures).toBe(1);
    expect(cache.has('b0')).toBe(false);
    expect(await cache.read('b0', src.fetcher('b0'), t, 20 * 4096)).toBe(4096); // the caller's fallback refetches
    expect(t.equals(want.subarray(20 * 4096, 21 * 4096))).toBe(true);
    await expect(async () => cache.readNow('b0', t, BIG + 1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it.each([['checked on the pool (native preadVerify)', true], ['checked on the event loop', false]] as const)('without RWF_NOWAIT (nowaitMax 0) the thread-pool path detects the same damage (%s)', async (_how, nativeVerify) => {
    const dir = tmp.make();
    const src = new BlockSource();
    src.fill(1, BIG, 33);
    const cache = await openCache({ dir, blockSize: BIG, capacityBytes: 4 * BIG, nowaitMax: 0, nativeVerify });
    await cache.get('b0', src.fetcher('b0'));
    await cache.flush();
    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + 100 * 4096 + 4095);
    const t = Buffer.alloc(4096);
    expect(await cache.read('b0', noFetch('b0'), t, 99 * 4096)).toBe(4096);
    expect(await cache.read('b0', src.fetcher('b0'), t, 100 * 4096)).toBe(4096);
    expect(t.equals(src.blocks.get('b0')!.subarray(100 * 4096, 101 * 4096))).toBe(true);
    expect(cache.stats()).toMatchObject({ checksumFailures: 1, nowaitReads: 0, hits: 1, misses: 2 });
    // Whole-block reads (always the pool): damage in the last unit is caught too.
    await cache.flush();
    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + BIG - 1);
    expect((await cache.get('b0', src.fetcher('b0'))).equals(src.blocks.get('b0')!)).toBe(true);
    expect(cache.stats().checksumFailures).toBe(2);
    expect(src.fetchesOf('b0')).toBe(3);
  });

  it.each([
    ['RWF_NOWAIT', undefined, true], ['thread pool, native check', 0, true], ['thread pool, event-loop check', 0, false],
  ] as const)('unaligned reads spanning units return the right bytes (%s, seeded)', async (_path, nowaitMax, nativeVerify) => {
    const dir = tmp.make();
    const src = new BlockSource();
    src.fill(2, BIG, 34, 2); // b1 is a short block (its last unit is partial)
    const cache = await openCache({ dir, blockSize: BIG, capacityBytes: 4 * BIG, nativeVerify, ...(nowaitMax !== undefined ? { nowaitMax } : {}) });
    for (const k of ['b0', 'b1']) await cache.get(k, src.fetcher(k));
    await cache.flush();
    const rnd = mulberry32(35);
    const cases: Array<[string, number, number]> = [
      ['b0', 1, 10], ['b0', 4095, 2], ['b0', 4000, 4096], ['b0', 4096 + 7, 3 * 4096], ['b0', 100, 64 * KiB], ['b0', 3, 200 * KiB],
      ['b0', BIG - 5000, 5000], ['b0', BIG - 10, 100], ['b1', 0, BIG], ['b1', 12345, BIG],
    ];
    for (let i = 0; i < 200; i++) {
      const k = rnd() < 0.5 ? 'b0' : 'b1';
      cases.push([k, Math.floor(rnd() * BIG), 1 + Math.floor(rnd() * (rnd() < 0.8 ? 3 * 4096 : 100 * KiB))]);
    }
    const before = cache.stats().nowaitReads;
    expect(cache.stats().misses).toBe(2); // the two gets above
    for (const [k, off, len] of cases) {
      const want = src.blocks.get(k)!;
      const t = Buffer.alloc(len, 0xee);
      const n = await cache.read(k, noFetch(k), t, off);
      const expected = Math.max(0, Math.min(len, want.length - off));
      expect(n, `${k} @${off}+${len}`).toBe(expected);
      expect(t.subarray(0, n).equals(want.subarray(off, off + n)), `${k} @${off}+${len}`).toBe(true);
      expect(t.subarray(n).every((b) => b === 0xee), `${k} @${off}+${len}: bytes past the block untouched`).toBe(true);
    }
    expect(cache.stats()).toMatchObject({ checksumFailures: 0, misses: 2 });
    if (nowaitMax === 0) expect(cache.stats().nowaitReads).toBe(before);
    else expect(cache.stats().nowaitReads).toBeGreaterThan(before + 100); // the small ones (<= 64 KiB)

    // Damage in an edge unit that an unaligned read only partly wants is still detected.
    flipByte(join(dir, 'slots.dat'), HEADER_BYTES + 9 * 4096 + 4000); // b0 unit 9, outside the wanted bytes
    const t = Buffer.alloc(4096);
    expect(await cache.read('b0', src.fetcher('b0'), t, 8 * 4096 + 100)).toBe(4096); // wants 8..9 (9 only up to +100)
    expect(t.equals(src.blocks.get('b0')!.subarray(8 * 4096 + 100, 9 * 4096 + 100))).toBe(true);
    expect(cache.stats().checksumFailures).toBe(1);
  });
});

/** A cache directory as format version 1 wrote it (64 KiB CRC units), holding `blocks` in slots 0.. with valid records. */
async function writeV1Cache(dir: string, blockSize: number, blocks: Buffer[], keys: string[]): Promise<void> {
  mkdirSync(dir, { recursive: true });
  const h = Buffer.alloc(44);
  h.writeUInt32LE(0x43434742, 0); // "BGCC"
  h.writeUInt32LE(1, 4);
  h.writeUInt32LE(4096, 8);
  h.writeUInt32LE(blockSize, 12);
  h.writeUInt32LE(64 * KiB, 16);
  h.writeUInt32LE(1, 20);
  Buffer.alloc(16, 7).copy(h, 24);
  h.writeUInt32LE(crc32c(h.subarray(0, 40)) >>> 0, 40);
  const file = Buffer.alloc(4096 + blocks.length * blockSize);
  h.copy(file, 0);
  blocks.forEach((b, i) => b.copy(file, 4096 + i * blockSize));
  writeFileSync(join(dir, 'slots.dat'), file);
  const db = new Level<string, Buffer>(join(dir, 'index'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  await db.put(META_KEY, h);
  for (const [i, b] of blocks.entries()) {
    const n = Math.ceil(b.length / (64 * KiB));
    const rec = Buffer.alloc(16 + 4 * n);
    rec.writeUInt32LE(i, 0);
    rec.writeUInt32LE(b.length, 4);
    rec.writeDoubleLE(i + 1, 8);
    for (let u = 0; u < n; u++) rec.writeUInt32LE(crc32c(b.subarray(u * 64 * KiB, (u + 1) * 64 * KiB)) >>> 0, 16 + 4 * u);
    await db.put(`e:${keys[i]}`, rec);
  }
  await db.close();
}

describe('ChunkCache: arguments and lifecycle', () => {
  it('a cache smaller than one block is a clear error', async () => {
    const dir = tmp.make();
    await expect(ChunkCache.open({ dir, blockSize: BS, capacityBytes: BS - 1 }))
      .rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, message: expect.stringMatching(/smaller than one block/) });
    await expect(ChunkCache.open({ dir, blockSize: BS, capacityBytes: 0 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(ChunkCache.open({ dir, blockSize: 1000, capacityBytes: 1 << 30 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(ChunkCache.open({ dir, blockSize: BS, capacityBytes: BS, maxPendingWrites: 0 })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
  });

  it('one cache per directory: a second open is refused clearly until the first closes', async () => {
    const dir = tmp.make();
    const a = await openCache({ dir });
    await expect(ChunkCache.open({ dir, blockSize: BS, capacityBytes: 16 * BS }))
      .rejects.toMatchObject({ code: ErrorCodes.IO, message: expect.stringMatching(/in use/) });
    await a.close();
    const b = await openCache({ dir });
    expect(b.stats().resets).toBe(0);
  });

  it('refuses reads after close and bad keys or offsets', async () => {
    const cache = await openCache({ dir: tmp.make() });
    await expect(cache.get('', noFetch(''))).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await expect(cache.read('k', noFetch('k'), Buffer.alloc(1), BS + 1)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    await cache.close();
    await cache.close(); // idempotent
    await expect(cache.get('k', noFetch('k'))).rejects.toMatchObject({ code: ErrorCodes.SHUTTING_DOWN });
  });
});

async function withIndex(dir: string, fn: (db: Level<string, Buffer>) => Promise<unknown>): Promise<void> {
  const db = new Level<string, Buffer>(join(dir, 'index'), { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try { await fn(db); } finally { await db.close(); }
}
