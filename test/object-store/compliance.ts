// The ObjectStore compliance suite (abstract-level style): one function that
// registers the same tests against any store a factory makes. Every
// implementation and every wrapper stack runs it (see *.test.ts here).
// Each test gets a fresh store from the factory (fresh dir / fresh prefix).
import { createHash, randomBytes } from 'node:crypto';
import { afterEach, describe, expect, test } from 'vitest';
import { ErrorCodes } from '../../src/errors.js';
import type { ObjectInfo, ObjectStore } from '../../src/object-store/object-store.js';

export interface ComplianceOptions {
  /** Keys for the pagination test (S3 pages hold 1000). */
  manyKeys?: number;
  /** Concurrent creators in the race tests. */
  racers?: number;
  /** Overwrites in the atomicity test. */
  overwrites?: number;
}

export type StoreFactory = () => Promise<ObjectStore>;

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

async function keysOf(it: AsyncIterable<ObjectInfo>): Promise<string[]> {
  const out: string[] = [];
  for await (const i of it) out.push(i.key);
  return out;
}

async function inBatches<T>(items: T[], width: number, fn: (t: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

export function objectStoreCompliance(name: string, factory: StoreFactory, options: ComplianceOptions = {}): void {
  const manyKeys = options.manyKeys ?? 1100;
  const racers = options.racers ?? 16;
  const overwrites = options.overwrites ?? 20;

  describe(`ObjectStore compliance: ${name}`, () => {
    const open: ObjectStore[] = [];
    const make = async (): Promise<ObjectStore> => {
      const s = await factory();
      open.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of open.splice(0)) await s.close();
    });

    test('put/get round trip: 0 bytes, 1 byte, 5 MiB; etag is the MD5 hex', async () => {
      const s = await make();
      for (const [key, body] of [
        ['empty', Buffer.alloc(0)],
        ['one', Buffer.from([0x42])],
        ['dir/big.bin', randomBytes(5 * 1024 * 1024)],
      ] as const) {
        const { etag } = await s.put(key, body);
        expect(etag).toBe(md5(body));
        const got = await s.get(key);
        expect(got.size).toBe(body.length);
        expect(got.etag).toBe(etag);
        expect(got.body.equals(body)).toBe(true);
        const info = await s.head(key);
        expect(info).toMatchObject({ key, size: body.length, etag });
        expect(Math.abs(info.lastModified.getTime() - Date.now())).toBeLessThan(120_000);
      }
    });

    test('overwrite replaces the whole object', async () => {
      const s = await make();
      await s.put('k', Buffer.from('first version, longer'));
      await s.put('k', Buffer.from('v2'));
      expect((await s.get('k')).body.toString()).toBe('v2');
      expect((await s.head('k')).size).toBe(2);
    });

    test('ranged gets are clamped at the end and report the whole size', async () => {
      const s = await make();
      const body = Buffer.from('0123456789');
      await s.put('r', body);
      const cases: Array<[number, number, string]> = [
        [0, 4, '0123'],
        [3, 3, '345'],
        [8, 100, '89'],
        [9, 1, '9'],
        [10, 5, ''],
        [50, 5, ''],
        [2, 0, ''],
      ];
      for (const [offset, length, want] of cases) {
        const got = await s.get('r', { range: { offset, length } });
        expect(got.body.toString(), `range ${offset}+${length}`).toBe(want);
        expect(got.size).toBe(10);
        expect(got.etag).toBe(md5(body));
      }
      await s.put('z', Buffer.alloc(0));
      const z = await s.get('z', { range: { offset: 0, length: 10 } });
      expect(z.body.length).toBe(0);
      expect(z.size).toBe(0);
      await expect(s.get('r', { range: { offset: -1, length: 1 } })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    });

    test('get with `into`: the right bytes whether the store reads into the buffer or not', async () => {
      const s = await make();
      const data = randomBytes(300_000);
      await s.put('into', data);
      const big = Buffer.alloc(400_000, 0xee);
      const got = await s.get('into', { into: big });
      expect(got.body.equals(data)).toBe(true);
      // When the store used the buffer, the body is a view of its start.
      if (got.body.buffer === big.buffer) expect(got.body.byteOffset).toBe(big.byteOffset);
      const small = Buffer.alloc(1000, 0xee);
      const got2 = await s.get('into', { into: small });
      expect(got2.body.equals(data)).toBe(true);
      expect(small.equals(Buffer.alloc(1000, 0xee))).toBe(true); // too small: not written
      const ranged = await s.get('into', { range: { offset: 100, length: 5000 }, into: Buffer.alloc(8192) });
      expect(ranged.body.equals(data.subarray(100, 5100))).toBe(true);
    });

    test('get/head of a missing key: OBJECT_NOT_FOUND, not retryable', async () => {
      const s = await make();
      await expect(s.get('missing')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND, retryable: false });
      await expect(s.head('missing/deeper')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND, retryable: false });
      await expect(s.get('missing', { range: { offset: 0, length: 1 } })).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
    });

    test('delete is idempotent', async () => {
      const s = await make();
      await s.delete('never-existed');
      await s.put('a/b', Buffer.from('x'));
      await s.delete('a/b');
      await s.delete('a/b');
      await expect(s.head('a/b')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
      expect(await keysOf(s.list(''))).toEqual([]);
      await s.put('a/b', Buffer.from('again'));
      expect((await s.get('a/b')).body.toString()).toBe('again');
    });

    test('invalid keys are refused with INVALID_ARGUMENT (not retryable)', async () => {
      const s = await make();
      for (const key of ['', '/abs', 'a//b', 'a/', '../x', 'a/../b', 'a/./b', 'nul\u0000', 'x'.repeat(1025)]) {
        await expect(s.put(key, Buffer.from('x')), JSON.stringify(key)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT, retryable: false });
        await expect(s.get(key)).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
      }
      await expect(s.put('k', Buffer.from('x'), { ifNoneMatch: 'x' as '*' })).rejects.toMatchObject({ code: ErrorCodes.INVALID_ARGUMENT });
    });

    test('list: every key once, UTF-8 byte order, prefix and startAfter', async () => {
      const s = await make();
      const keys = ['b', 'a', 'a-b', 'a/b', 'a/c/d', 'aa', 'a%!x', 'é', '\u{1F600}', '\uFFFD', 'A', 'a/c-e', 'a/c/d/e'];
      await Promise.all(keys.map((k) => s.put(k, Buffer.from(k))));
      const sorted = [...keys].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
      const all: ObjectInfo[] = [];
      for await (const i of s.list('')) all.push(i);
      expect(all.map((i) => i.key)).toEqual(sorted);
      for (const i of all) {
        expect(i.size).toBe(Buffer.byteLength(i.key));
        expect(i.etag).toBe(md5(Buffer.from(i.key)));
      }
      expect(await keysOf(s.list('a/'))).toEqual(sorted.filter((k) => k.startsWith('a/')));
      expect(await keysOf(s.list('a'))).toEqual(sorted.filter((k) => k.startsWith('a')));
      expect(await keysOf(s.list('a/c'))).toEqual(['a/c-e', 'a/c/d', 'a/c/d/e']);
      expect(await keysOf(s.list('a/c/'))).toEqual(['a/c/d', 'a/c/d/e']);
      expect(await keysOf(s.list('nothing/'))).toEqual([]);
      expect(await keysOf(s.list('', { startAfter: 'a-b' }))).toEqual(sorted.filter((k) => Buffer.compare(Buffer.from(k), Buffer.from('a-b')) > 0));
      expect(await keysOf(s.list('', { startAfter: 'a/c' }))).toEqual(sorted.filter((k) => Buffer.compare(Buffer.from(k), Buffer.from('a/c')) > 0));
      expect(await keysOf(s.list('a/', { startAfter: 'a/c/d' }))).toEqual(['a/c/d/e']);
      expect(await keysOf(s.list('', { startAfter: '\u{1F600}' }))).toEqual([]);
    });

    test(`list pages through ${manyKeys} keys in order`, async () => {
      const s = await make();
      const keys = Array.from({ length: manyKeys }, (_, i) => `many/${String(i).padStart(5, '0')}`);
      await inBatches(keys, 16, (k) => s.put(k, Buffer.from('v')));
      await s.put('manz', Buffer.from('outside'));
      expect(await keysOf(s.list('many/'))).toEqual(keys);
      expect(await keysOf(s.list('many/', { startAfter: keys[499]! }))).toEqual(keys.slice(500));
    });

    test('ifNoneMatch: creates once; existing key -> PRECONDITION_FAILED (not retryable)', async () => {
      const s = await make();
      const { etag } = await s.put('once', Buffer.from('first'), { ifNoneMatch: '*' });
      expect(etag).toBe(md5(Buffer.from('first')));
      await expect(s.put('once', Buffer.from('second'), { ifNoneMatch: '*' })).rejects.toMatchObject({
        code: ErrorCodes.PRECONDITION_FAILED,
        retryable: false,
      });
      expect((await s.get('once')).body.toString()).toBe('first');
    });

    test(`ifNoneMatch race: ${racers} concurrent creators, exactly one wins`, async () => {
      const s = await make();
      for (let round = 0; round < 3; round++) {
        const key = `race/${round}`;
        const results = await Promise.allSettled(
          Array.from({ length: racers }, (_, i) => s.put(key, Buffer.from(`writer-${i}`), { ifNoneMatch: '*' })),
        );
        const winners = results.map((r, i) => (r.status === 'fulfilled' ? i : -1)).filter((i) => i >= 0);
        expect(winners.length).toBe(1);
        for (const r of results) {
          if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: ErrorCodes.PRECONDITION_FAILED });
        }
        expect((await s.get(key)).body.toString()).toBe(`writer-${winners[0]}`);
      }
    });

    test('ifMatch: succeeds on the current ETag, fails on a stale one or a missing key', async () => {
      const s = await make();
      const v1 = await s.put('m', Buffer.from('v1'));
      const v2 = await s.put('m', Buffer.from('v2'), { ifMatch: v1.etag });
      expect(v2.etag).toBe(md5(Buffer.from('v2')));
      await expect(s.put('m', Buffer.from('v3'), { ifMatch: v1.etag })).rejects.toMatchObject({ code: ErrorCodes.PRECONDITION_FAILED, retryable: false });
      expect((await s.get('m')).body.toString()).toBe('v2');
      // quoted form (as S3 returns it to other clients) is accepted too
      await s.put('m', Buffer.from('v4'), { ifMatch: `"${v2.etag}"` });
      await expect(s.put('absent', Buffer.from('x'), { ifMatch: v1.etag })).rejects.toMatchObject({ code: ErrorCodes.PRECONDITION_FAILED });
      await expect(s.head('absent')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
    });

    test(`ifMatch race: ${racers} writers with the same ETag, exactly one wins`, async () => {
      const s = await make();
      const base = await s.put('cas', Buffer.from('base'));
      const results = await Promise.allSettled(
        Array.from({ length: racers }, (_, i) => s.put('cas', Buffer.from(`cas-${i}`), { ifMatch: base.etag })),
      );
      const winners = results.map((r, i) => (r.status === 'fulfilled' ? i : -1)).filter((i) => i >= 0);
      expect(winners.length).toBe(1);
      expect((await s.get('cas')).body.toString()).toBe(`cas-${winners[0]}`);
    });

    test('atomicity: readers during overwrites see a whole old or whole new object', async () => {
      const s = await make();
      const size = 1024 * 1024 + 17;
      const versions = [0xaa, 0x55, 0x0f].map((b, i) => Buffer.alloc(size + i * 4096, b));
      await s.put('atom', versions[0]!);
      let writing = true;
      const writer = (async () => {
        try {
          for (let i = 1; i <= overwrites; i++) await s.put('atom', versions[i % versions.length]!);
        } finally {
          writing = false;
        }
      })();
      let reads = 0;
      const reader = async (): Promise<void> => {
        while (writing) {
          const got = await s.get('atom');
          const v = versions.find((x) => x[0] === got.body[0]);
          expect(v, 'first byte names a version').toBeDefined();
          expect(got.body.length).toBe(v!.length);
          expect(got.body.equals(v!)).toBe(true);
          expect(got.etag).toBe(md5(v!));
          reads++;
        }
      };
      await Promise.all([writer, reader(), reader()]);
      expect(reads).toBeGreaterThan(0);
    });

    test('every failure is a BlockgateError with a retryable flag', async () => {
      const s = await make();
      const errs = await Promise.allSettled([s.get('nope'), s.head('nope'), s.put('x//y', Buffer.alloc(1))]);
      for (const r of errs) {
        expect(r.status).toBe('rejected');
        const e = (r as PromiseRejectedResult).reason as { name: string; code: string; retryable: unknown };
        expect(e.name).toBe('BlockgateError');
        expect(typeof e.retryable).toBe('boolean');
      }
    });
  });
}
