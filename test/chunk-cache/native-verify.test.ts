// The native addon's preadVerify (the chunk cache's thread-pool slot reads:
// pread + CRC32C per unit on the pool) and its CRC32C, against
// @node-rs/crc32 (what the cache's index records are computed with).
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { afterAll, describe, expect, it } from 'vitest';
import * as native from '../../src/native/index.js';
import { mulberry32, randomBlock } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'bg-native-verify-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function unitCrcs(data: Buffer, unit: number): Uint32Array {
  const out = new Uint32Array(Math.ceil(data.length / unit));
  for (let i = 0; i < out.length; i++) out[i] = crc32c(data.subarray(i * unit, (i + 1) * unit)) >>> 0;
  return out;
}

describe('native preadVerify and crc32c', () => {
  it('crc32c equals @node-rs/crc32 for every length 0..2400 and large, odd-aligned buffers (seeded)', () => {
    expect(native.crc32c(Buffer.from('123456789'))).toBe(0xe3069283); // the CRC-32C check value
    const data = randomBlock(mulberry32(1), 1 << 20);
    // Up to 3 interleaved 256-byte spans (768) and beyond: every split between the 3-chain loop and the tail.
    for (let len = 0; len <= 2400; len++) expect(native.crc32c(data.subarray(7, 7 + len)), `length ${len}`).toBe(crc32c(data.subarray(7, 7 + len)) >>> 0);
    for (const len of [4095, 4096, 4097, 65536, (1 << 20) - 3]) expect(native.crc32c(data.subarray(3, 3 + len))).toBe(crc32c(data.subarray(3, 3 + len)) >>> 0);
  });

  it('reads the bytes, resolves -1 when every unit matches and the first bad unit otherwise (short last unit included)', async () => {
    const data = randomBlock(mulberry32(2), 10 * 4096 + 1000); // 11 units, the last 1000 bytes
    const file = join(dir, 'slots');
    writeFileSync(file, Buffer.concat([Buffer.alloc(4096), data]));
    const crcs = unitCrcs(data, 4096);
    const fd = openSync(file, 'r');
    try {
      const all = Buffer.alloc(data.length);
      expect(await native.preadVerify(fd, all, 0, all.length, 4096, crcs, 0, 4096)).toBe(-1);
      expect(all.equals(data)).toBe(true);
      // Units 3..4 into the middle of a bigger buffer.
      const mid = Buffer.alloc(4 * 4096, 0xee);
      expect(await native.preadVerify(fd, mid, 4096, 2 * 4096, 4096 + 3 * 4096, crcs, 3, 4096)).toBe(-1);
      expect(mid.subarray(4096, 3 * 4096).equals(data.subarray(3 * 4096, 5 * 4096))).toBe(true);
      expect(mid.subarray(0, 4096).every((b) => b === 0xee) && mid.subarray(3 * 4096).every((b) => b === 0xee)).toBe(true);
      // The short last unit.
      const tail = Buffer.alloc(1000);
      expect(await native.preadVerify(fd, tail, 0, 1000, 4096 + 10 * 4096, crcs, 10, 4096)).toBe(-1);
      // Wrong expectations: the index (relative to firstUnit) of the first mismatch.
      const wrong = Uint32Array.from(crcs);
      wrong[6] = wrong[6]! ^ 1;
      wrong[8] = wrong[8]! ^ 1;
      expect(await native.preadVerify(fd, all, 0, all.length, 4096, wrong, 0, 4096)).toBe(6);
      expect(await native.preadVerify(fd, Buffer.alloc(4 * 4096), 0, 4 * 4096, 4096 + 5 * 4096, wrong, 5, 4096)).toBe(1);
      // Reading past the end of the file is an error, not a short success.
      await expect(native.preadVerify(fd, Buffer.alloc(2 * 4096), 0, 2 * 4096, 4096 + 10 * 4096, crcs, 0, 4096)).rejects.toMatchObject({ code: 'EIO' });
      // Arguments are checked synchronously.
      expect(() => native.preadVerify(fd, all, 0, all.length, 4096, crcs, 1, 4096)).toThrow(RangeError); // needs crcs[1..12)
      expect(() => native.preadVerify(fd, all, 1, all.length, 4096, crcs, 0, 4096)).toThrow(RangeError);
      expect(() => native.preadVerify(fd, all, 0, all.length, 4096, new Int32Array(11) as unknown as Uint32Array, 0, 4096)).toThrow(TypeError);
      expect(() => native.preadVerify(fd, all, 0, 0, 4096, crcs, 0, 4096)).toThrow(TypeError); // length >= 1
    } finally {
      closeSync(fd);
    }
  });
});
