// BlockDevice compliance suite (abstract-level style): call
// `blockDeviceCompliance(name, factory)` from a *.test.ts file to run every
// contract test against one implementation. Sections are switched by the
// device's capabilities at run time (a test whose capability is missing is
// reported as skipped, not passed).
//
// The suite only issues requests a CheckedDevice would let through (in range,
// length >= 1, no writes to read-only devices, no call whose capability is
// 'none'), so it runs equally on a bare device and on a checked one.

import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';

import type { BlockDevice, Extent } from '../../src/block-device/block-device.js';
import { isBlockgateError } from '../../src/errors.js';
import { mulberry32 } from '../harness/prng.js';

export interface DeviceFactory {
  /** A new device of `size` bytes on a fresh backing store. */
  create(size: number): Promise<BlockDevice>;
  /** Opens the backing store of `device` again, after `device` was closed. Omit to skip persistence tests. */
  reopen?(device: BlockDevice, opts: { readOnly: boolean }): Promise<BlockDevice>;
  /** Called once after the suite. */
  dispose?(): Promise<void>;
}

export interface ComplianceOptions {
  /** Device size used by most tests (default 64 MiB). */
  size?: number;
  /** A fresh device reads as zeros (default true). */
  freshIsZero?: boolean;
  /** Largest single request the suite issues (default min(maxBlockSize, 32 MiB)). */
  largestRequest?: number;
  /**
   * The device can be reopened read-only (default true). Stored and cached
   * volumes cannot: `readOnly` is a raw-volume setting (src/daemon/config.ts
   * accepts it only for `mode: raw`).
   */
  reopenReadOnly?: boolean;
}

const MiB = 1024 * 1024;

/** Deterministic non-zero-ish pattern: byte i = f(seed, i). */
export function pattern(length: number, seed: number): Buffer {
  const b = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    b[i] = (x & 0xff) | 1; // never 0: a zeroed byte is always detectable
  }
  return b;
}

function isZero(b: Buffer): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

async function readBack(dev: BlockDevice, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length, 0xee);
  await dev.read(b, offset);
  return b;
}

const NO_FUA = { fua: false } as const;

export function blockDeviceCompliance(name: string, factory: DeviceFactory, options: ComplianceOptions = {}): void {
  const SIZE = options.size ?? 64 * MiB;
  const freshIsZero = options.freshIsZero ?? true;

  async function open(size = SIZE): Promise<BlockDevice> {
    const dev = await factory.create(size);
    onTestFinished(async () => {
      await dev.close().catch(() => undefined);
    });
    return dev;
  }

  async function reopen(dev: BlockDevice, readOnly = false): Promise<BlockDevice> {
    const again = await factory.reopen!(dev, { readOnly });
    onTestFinished(async () => {
      await again.close().catch(() => undefined);
    });
    return again;
  }

  describe(`BlockDevice compliance: ${name}`, () => {
    afterAll(async () => {
      await factory.dispose?.();
    });

    describe('capabilities', () => {
      it('reports the size it was created with and sane block sizes', async () => {
        const dev = await open();
        const c = dev.capabilities();
        expect(c.size).toBe(SIZE);
        expect(c.minBlockSize).toBeGreaterThanOrEqual(1);
        expect(c.preferredBlockSize).toBeGreaterThanOrEqual(c.minBlockSize);
        expect(c.maxBlockSize).toBeGreaterThanOrEqual(c.preferredBlockSize);
        for (const v of [c.minBlockSize, c.preferredBlockSize]) expect(v & (v - 1)).toBe(0); // powers of two
        expect(c.maxBlockSize % c.minBlockSize).toBe(0);
        expect(['none', 'emulate', 'native']).toContain(c.fua);
        expect(['none', 'emulate', 'native']).toContain(c.zero);
        expect(['none', 'emulate', 'native']).toContain(c.cache);
        expect(c.readOnly).toBe(false);
      });

      it('capabilities() is stable while open', async () => {
        const dev = await open();
        expect(dev.capabilities()).toEqual(dev.capabilities());
      });

      it('offers a method for every capability it claims', async () => {
        const dev = await open();
        const c = dev.capabilities();
        if (c.zero === 'native') expect(typeof dev.zero).toBe('function');
        if (c.trim) expect(typeof dev.trim).toBe('function');
        if (c.flush) expect(typeof dev.flush).toBe('function');
        if (c.cache === 'native') expect(typeof dev.cache).toBe('function');
        if (c.extents) expect(typeof dev.extents).toBe('function');
        if (c.fastZero) expect(c.zero).not.toBe('none');
      });
    });

    describe('read and write', () => {
      it.skipIf(!freshIsZero)('a fresh device reads as zeros (start, middle, end)', async () => {
        const dev = await open();
        for (const [off, len] of [[0, 4096], [SIZE / 2 - 100, 300], [SIZE - 4096, 4096], [SIZE - 1, 1]] as const) {
          expect(isZero(await readBack(dev, off, len))).toBe(true);
        }
      });

      it('reads back what was written, at aligned and unaligned offsets', async () => {
        const dev = await open();
        const cases: Array<[number, number]> = [
          [0, 4096], [4096, 65536], [1, 1], [511, 513], [4095, 2], [12345, 100_000], [SIZE - 1, 1], [SIZE - 8192, 8192],
        ];
        let seed = 1;
        for (const [off, len] of cases) {
          const data = pattern(len, seed++);
          await dev.write(Buffer.from(data), off, NO_FUA);
          expect((await readBack(dev, off, len)).equals(data), `at ${off}+${len}`).toBe(true);
        }
      });

      it('write does not disturb neighbouring bytes', async () => {
        const dev = await open();
        const base = pattern(3 * 4096, 7);
        await dev.write(Buffer.from(base), 8192, NO_FUA);
        const patch = pattern(10, 8);
        await dev.write(Buffer.from(patch), 8192 + 4090, NO_FUA);
        const got = await readBack(dev, 8192, 3 * 4096);
        const want = Buffer.from(base);
        patch.copy(want, 4090);
        expect(got.equals(want)).toBe(true);
      });

      it('read fills exactly the target, not a byte around it', async () => {
        const dev = await open();
        await dev.write(pattern(8192, 3), 0, NO_FUA);
        const outer = Buffer.alloc(8192 + 64, 0xaa);
        const target = outer.subarray(32, 32 + 4000);
        await dev.read(target, 100);
        expect(target.equals(pattern(8192, 3).subarray(100, 4100))).toBe(true);
        expect(outer.subarray(0, 32).every((b) => b === 0xaa)).toBe(true);
        expect(outer.subarray(32 + 4000).every((b) => b === 0xaa)).toBe(true);
      });

      it('handles the largest request it advertises', async () => {
        const dev = await open();
        const max = Math.min(dev.capabilities().maxBlockSize, options.largestRequest ?? 32 * MiB, SIZE);
        const data = randomBytes(max);
        await dev.write(Buffer.from(data), SIZE - max, NO_FUA);
        expect((await readBack(dev, SIZE - max, max)).equals(data)).toBe(true);
      });

      it('many concurrent writes and reads land where they should', async () => {
        const dev = await open();
        const n = 128;
        const blocks = Array.from({ length: n }, (_, i) => ({ off: ((i * 37) % n) * 4096 * 3 + (i % 7), data: pattern(4096, 100 + i) }));
        await Promise.all(blocks.map((b) => dev.write(Buffer.from(b.data), b.off, NO_FUA)));
        const reads = await Promise.all(blocks.map((b) => readBack(dev, b.off, 4096)));
        reads.forEach((r, i) => expect(r.equals(blocks[i]!.data), `block ${i}`).toBe(true));
      });

      it('the last write of a sequence wins', async () => {
        const dev = await open();
        for (let i = 0; i < 5; i++) await dev.write(pattern(4096, 200 + i), 4096, NO_FUA);
        expect((await readBack(dev, 4096, 4096)).equals(pattern(4096, 204))).toBe(true);
      });

      it('write with fua is readable at once', async (ctx) => {
        const dev = await open();
        if (dev.capabilities().fua !== 'native') ctx.skip();
        const data = pattern(10_000, 9);
        await dev.write(Buffer.from(data), 777, { fua: true });
        expect((await readBack(dev, 777, 10_000)).equals(data)).toBe(true);
      });
    });

    describe('flush', () => {
      it('flush resolves after writes (and with nothing to flush)', async (ctx) => {
        const dev = await open();
        if (!dev.capabilities().flush) ctx.skip();
        await dev.flush!();
        await dev.write(pattern(4096, 1), 0, NO_FUA);
        await dev.flush!();
        await Promise.all([dev.flush!(), dev.write(pattern(4096, 2), 4096, NO_FUA), dev.flush!()]);
        expect((await readBack(dev, 4096, 4096)).equals(pattern(4096, 2))).toBe(true);
      });
    });

    describe('zero', () => {
      const variants = [
        { mayTrim: false, fua: false },
        { mayTrim: true, fua: false },
        { mayTrim: false, fua: true },
        { mayTrim: true, fua: true },
      ];
      for (const v of variants) {
        it(`zeroes exactly the range (mayTrim=${v.mayTrim}, fua=${v.fua})`, async (ctx) => {
          const dev = await open();
          if (dev.capabilities().zero !== 'native') ctx.skip();
          const region = 256 * 1024;
          const data = pattern(region, 31);
          await dev.write(Buffer.from(data), 0, NO_FUA);
          // unaligned, aligned, one byte, whole-block
          const cases: Array<[number, number]> = [[100, 5000], [8192, 65536], [region - 1, 1], [131072, 4096]];
          const want = Buffer.from(data);
          for (const [off, len] of cases) {
            await dev.zero!(off, len, { ...v, fast: false });
            want.fill(0, off, off + len);
          }
          expect((await readBack(dev, 0, region)).equals(want)).toBe(true);
        });
      }

      it('zeroing a never-written range reads as zeros', async (ctx) => {
        const dev = await open();
        if (dev.capabilities().zero !== 'native') ctx.skip();
        await dev.zero!(SIZE - 3 * MiB, 3 * MiB, { fua: false, mayTrim: true, fast: false });
        expect(isZero(await readBack(dev, SIZE - 3 * MiB, 3 * MiB))).toBe(true);
      });

      it('zero then write then read returns the new data', async (ctx) => {
        const dev = await open();
        if (dev.capabilities().zero !== 'native') ctx.skip();
        await dev.write(pattern(65536, 40), 0, NO_FUA);
        await dev.zero!(0, 65536, { fua: false, mayTrim: true, fast: false });
        await dev.write(pattern(1000, 41), 3000, NO_FUA);
        const want = Buffer.alloc(65536);
        pattern(1000, 41).copy(want, 3000);
        expect((await readBack(dev, 0, 65536)).equals(want)).toBe(true);
      });

      it('fast zero either zeroes or fails with ERR_NOT_SUPPORTED leaving data intact', async (ctx) => {
        const dev = await open();
        const c = dev.capabilities();
        if (c.zero !== 'native' || !c.fastZero) ctx.skip();
        const data = pattern(65536, 50);
        await dev.write(Buffer.from(data), 0, NO_FUA);
        try {
          await dev.zero!(4096, 8192, { fua: false, mayTrim: false, fast: true });
          const want = Buffer.from(data).fill(0, 4096, 12288);
          expect((await readBack(dev, 0, 65536)).equals(want)).toBe(true);
        } catch (err) {
          expect(isBlockgateError(err, 'ERR_NOT_SUPPORTED')).toBe(true);
          expect((await readBack(dev, 0, 65536)).equals(data)).toBe(true);
        }
      });
    });

    describe('trim', () => {
      it('trim leaves neighbours intact and the range readable', async (ctx) => {
        const dev = await open();
        if (!dev.capabilities().trim) ctx.skip();
        const data = pattern(1 * MiB, 60);
        await dev.write(Buffer.from(data), 0, NO_FUA);
        await dev.trim!(65536 + 100, 256 * 1024, NO_FUA);
        await dev.trim!(700_000, 1, { fua: true });
        const got = await readBack(dev, 0, 1 * MiB);
        expect(got.subarray(0, 65536 + 100).equals(data.subarray(0, 65536 + 100))).toBe(true);
        expect(got.subarray(65536 + 100 + 256 * 1024, 700_000).equals(data.subarray(65536 + 100 + 256 * 1024, 700_000))).toBe(true);
        expect(got.subarray(700_001).equals(data.subarray(700_001))).toBe(true);
        // the trimmed range holds either the old bytes or zeros, byte by byte
        for (let i = 65536 + 100; i < 65536 + 100 + 256 * 1024; i++) {
          if (got[i] !== 0 && got[i] !== data[i]) throw new Error(`trimmed byte ${i} is neither old data nor zero`);
        }
      });

      it('a trimmed range can be written again', async (ctx) => {
        const dev = await open();
        if (!dev.capabilities().trim) ctx.skip();
        await dev.write(pattern(65536, 61), 0, NO_FUA);
        await dev.trim!(0, 65536, NO_FUA);
        await dev.write(pattern(65536, 62), 0, NO_FUA);
        expect((await readBack(dev, 0, 65536)).equals(pattern(65536, 62))).toBe(true);
      });
    });

    describe('cache', () => {
      it('cache resolves and changes nothing', async (ctx) => {
        const dev = await open();
        if (dev.capabilities().cache !== 'native') ctx.skip();
        await dev.write(pattern(65536, 70), 0, NO_FUA);
        await dev.cache!(0, 65536);
        await dev.cache!(SIZE - 1, 1);
        expect((await readBack(dev, 0, 65536)).equals(pattern(65536, 70))).toBe(true);
      });
    });

    describe('extents', () => {
      async function checkExtents(dev: BlockDevice, offset: number, length: number): Promise<Extent[]> {
        const ex = await dev.extents!(offset, length);
        expect(ex.length).toBeGreaterThan(0);
        let pos = offset;
        for (const e of ex) {
          expect(Number.isSafeInteger(e.length) && e.length > 0).toBe(true);
          if (e.zero) {
            // a run claimed zero must read as zeros (checked on up to 1 MiB of it)
            const n = Math.min(e.length, MiB, SIZE - pos);
            expect(isZero(await readBack(dev, pos, n)), `zero extent at ${pos}`).toBe(true);
          }
          pos += e.length;
        }
        expect(pos).toBeGreaterThan(offset);
        expect(pos).toBeLessThanOrEqual(SIZE);
        return ex;
      }

      it('extents are contiguous from the offset, in range, and truthful about zeros', async (ctx) => {
        const dev = await open();
        if (!dev.capabilities().extents) ctx.skip();
        await dev.write(pattern(MiB, 80), 2 * MiB, NO_FUA);
        await dev.write(pattern(4096, 81), SIZE - 4096, NO_FUA);
        for (const [off, len] of [[0, SIZE], [2 * MiB + 5, 100], [3 * MiB, SIZE - 3 * MiB], [SIZE - 1, 1], [1, 1]] as const) {
          await checkExtents(dev, off, len);
        }
      });

      it('written data is never reported as zero', async (ctx) => {
        const dev = await open();
        if (!dev.capabilities().extents) ctx.skip();
        await dev.write(pattern(65536, 82), 4 * MiB, NO_FUA);
        const ex = await checkExtents(dev, 4 * MiB, 65536);
        let pos = 4 * MiB;
        for (const e of ex) {
          if (pos < 4 * MiB + 65536) expect(e.zero, `extent at ${pos}`).toBe(false);
          pos += e.length;
        }
      });

      it('zeroed and trimmed ranges are still truthfully reported', async (ctx) => {
        const dev = await open();
        const c = dev.capabilities();
        if (!c.extents || c.zero !== 'native') ctx.skip();
        await dev.write(pattern(2 * MiB, 83), 0, NO_FUA);
        await dev.zero!(0, MiB, { fua: false, mayTrim: true, fast: false });
        await dev.zero!(MiB, 512 * 1024, { fua: false, mayTrim: false, fast: false });
        if (c.trim) await dev.trim!(MiB + 512 * 1024, 4096, NO_FUA);
        await checkExtents(dev, 0, 4 * MiB);
      });
    });

    describe('close and reopen', () => {
      it('close resolves; a closed device rejects new requests', async () => {
        const dev = await factory.create(SIZE);
        await dev.close();
        await expect(dev.read(Buffer.alloc(1), 0)).rejects.toThrow();
      });

      it.skipIf(!factory.reopen)('flushed data survives close and reopen', async () => {
        const dev = await factory.create(SIZE);
        const data = pattern(3 * 4096 + 5, 90);
        await dev.write(Buffer.from(data), 4096 * 10 - 3, NO_FUA);
        if (dev.capabilities().flush) await dev.flush!();
        await dev.close();
        const again = await reopen(dev);
        expect((await readBack(again, 4096 * 10 - 3, data.length)).equals(data)).toBe(true);
      });

      it.skipIf(!factory.reopen)('close waits for in-flight writes', async () => {
        const dev = await factory.create(SIZE);
        const writes = Array.from({ length: 32 }, (_, i) => dev.write(pattern(65536, 300 + i), i * 65536, NO_FUA));
        const closed = dev.close();
        await Promise.all(writes);
        await closed;
        const again = await reopen(dev);
        for (let i = 0; i < 32; i++) {
          expect((await readBack(again, i * 65536, 65536)).equals(pattern(65536, 300 + i)), `write ${i}`).toBe(true);
        }
      });

      it.skipIf(!factory.reopen)('seeded writes, zeroes and trims survive close and reopen byte for byte, extents still truthful', async () => {
        const dev = await factory.create(SIZE);
        const c = dev.capabilities();
        const model = await readBack(dev, 0, SIZE);
        const rnd = mulberry32(0x5eed);
        for (let i = 0; i < 150; i++) {
          const aligned = rnd() < 0.5;
          const len = aligned ? 4096 * (1 + Math.floor(rnd() * 64)) : 1 + Math.floor(rnd() * 200_000);
          const off = aligned ? 4096 * Math.floor(rnd() * ((SIZE - len) / 4096)) : Math.floor(rnd() * (SIZE - len));
          const kind = rnd();
          if (kind < 0.6 || (c.zero !== 'native' && !c.trim)) {
            const data = pattern(len, 1000 + i);
            await dev.write(Buffer.from(data), off, NO_FUA);
            data.copy(model, off);
          } else if (kind < 0.85 && c.zero === 'native') {
            await dev.zero!(off, len, { fua: false, mayTrim: rnd() < 0.5, fast: false });
            model.fill(0, off, off + len);
          } else if (c.trim) {
            await dev.trim!(off, len, NO_FUA);
            // TRIM is advisory: byte by byte the old data or zero; the model takes what reads back.
            const got = await readBack(dev, off, len);
            for (let k = 0; k < len; k++) {
              if (got[k] !== 0 && got[k] !== model[off + k]) throw new Error(`op ${i}: trimmed byte ${off + k} is neither old data nor zero`);
            }
            got.copy(model, off);
          }
        }
        if (c.flush) await dev.flush!();
        expect((await readBack(dev, 0, SIZE)).equals(model), 'before close').toBe(true);
        await dev.close();
        const again = await reopen(dev);
        const got = await readBack(again, 0, SIZE);
        const bad = got.findIndex((b, k) => b !== model[k]);
        expect(bad, `first difference after reopen at ${bad}`).toBe(-1);
        if (again.capabilities().extents) {
          let pos = 0;
          while (pos < SIZE) {
            const ex = await again.extents!(pos, SIZE - pos);
            expect(ex.length, `extents at ${pos}`).toBeGreaterThan(0); // (and each length > 0: the loop ends)
            for (const e of ex) {
              expect(e.length).toBeGreaterThan(0);
              if (e.zero) expect(isZero(model.subarray(pos, pos + e.length)), `zero extent at ${pos}+${e.length}`).toBe(true);
              pos += e.length;
            }
          }
        }
      });

      it.skipIf(!factory.reopen || options.reopenReadOnly === false)('reopened read-only: reports readOnly and reads the data', async () => {
        const dev = await factory.create(SIZE);
        await dev.write(pattern(4096, 95), 0, NO_FUA);
        await dev.close();
        const ro = await reopen(dev, true);
        const c = ro.capabilities();
        expect(c.readOnly).toBe(true);
        expect(c.size).toBe(SIZE);
        expect((await readBack(ro, 0, 4096)).equals(pattern(4096, 95))).toBe(true);
      });
    });
  });
}
