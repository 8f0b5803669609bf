// The native addon's preadVerify (the chunk cache's thread-pool slot reads:
// pread + CRC32C per unit on the pool) and its CRC32C, against
// @node-rs/crc32 (what the cache's index records are computed with).
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { describe, expect, it } from 'vitest';
import { VerifyBatcher } from '../../src/chunk-cache/verify-batch.js';
import * as native from '../../src/native/index.js';
import { tempDir } from '../harness/cleanup.js';
import { runOk } from '../harness/process.js';
import { mulberry32, randomBlock } from './helpers.js';

const dir = tempDir('bg-native-verify-');

/** The CRC32C code the addon must choose on this CPU: AVX-512 folding needs avx512f, avx512vl and vpclmulqdq; the crc32 instruction needs sse4_2. */
function bestCrcPath(): 'avx512' | 'sse42' | 'table' {
  if (process.arch !== 'x64') return 'table';
  const flags = new Set(/^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? []);
  if (!flags.has('sse4_2')) return 'table';
  return flags.has('avx512f') && flags.has('avx512vl') && flags.has('vpclmulqdq') ? 'avx512' : 'sse42';
}

/** The path under BLOCKGATE_NATIVE_CRC=cap: the cap lowers the choice, never raises it. */
function expectedCrcPath(cap: string): 'avx512' | 'sse42' | 'table' {
  const best = bestCrcPath();
  if (cap === 'table') return 'table';
  if (cap === 'sse42') return best === 'avx512' ? 'sse42' : best;
  return best;
}

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

  // The addon picks AVX-512 folding, SSE4.2 or tables by CPU; BLOCKGATE_NATIVE_CRC caps the choice per
  // process, so each path runs in its own child. The child reports the path it ran, and the test asserts
  // it is the one this CPU (its /proc/cpuinfo flags) makes the addon choose: a CPU with AVX-512 must run
  // the AVX-512 code, not pass on a fallback.
  it('the default CRC32C path is the best one this CPU has (/proc/cpuinfo flags)', () => {
    console.log(`crc32c: ${native.crc32cPath()} path (CPU flags allow: ${bestCrcPath()})`);
    expect(native.crc32cPath()).toBe(expectedCrcPath(process.env.BLOCKGATE_NATIVE_CRC ?? ''));
  });

  it.each(['', 'sse42', 'table'])('every CRC32C code path agrees with @node-rs/crc32 (BLOCKGATE_NATIVE_CRC=%s)', async (cap) => {
    const script = `
      import { createRequire } from 'node:module';
      import { crc32c } from '@node-rs/crc32';
      const addon = createRequire(import.meta.url)(process.env.ADDON);
      const data = Buffer.alloc((1 << 20) + 64);
      let x = 12345;
      for (let i = 0; i < data.length; i++) { x = (x * 1103515245 + 12345) >>> 0; data[i] = x >>> 24; }
      const lengths = [];
      for (let len = 0; len <= 2400; len++) lengths.push(len);
      lengths.push(4095, 4096, 4097, 65536, 65536 + 255, (1 << 20) - 3, 1 << 20);
      let bad = 0;
      for (const off of [0, 1, 7, 63])
        for (const len of lengths) if (addon.crc32c(data.subarray(off, off + len)) !== crc32c(data.subarray(off, off + len)) >>> 0) bad++;
      console.log(JSON.stringify({ bad, check: addon.crc32c(Buffer.from('123456789')), path: addon.crc32cPath() }));`;
    const addonPath = join(__dirname, '..', '..', 'build', 'Release', 'blockgate_native.node');
    const { stdout } = await runOk(process.execPath, ['--input-type=module', '-e', script], {
      cwd: join(__dirname, '..', '..'), env: { ADDON: addonPath, BLOCKGATE_NATIVE_CRC: cap },
    });
    const result = JSON.parse(stdout) as { bad: number; check: number; path: string };
    console.log(`crc32c: ${result.path} path tested (BLOCKGATE_NATIVE_CRC=${cap || 'unset'})`);
    expect(result).toEqual({ bad: 0, check: 0xe3069283, path: expectedCrcPath(cap) });
  });

  it('several reads in one job: each gets its own result; a failed read fails only itself (VerifyBatcher)', async () => {
    const data = randomBlock(mulberry32(3), 8 * 4096);
    const file = join(dir, 'batch');
    writeFileSync(file, data);
    const crcs = unitCrcs(data, 4096);
    const wrong = Uint32Array.from(crcs);
    wrong[5] = wrong[5]! ^ 0x10;
    const fd = openSync(file, 'r');
    try {
      const raw = await native.preadVerifyMany(fd, [
        Buffer.alloc(2 * 4096), 2 * 4096, 0, crcs, 0,
        Buffer.alloc(3 * 4096), 3 * 4096, 4 * 4096, wrong, 4, // units 4..6: unit 5 is wrong, index 1 of this read
        Buffer.alloc(4096), 4096, 8 * 4096, crcs, 0, // past the end
      ], 4096);
      expect(Array.from(raw)).toEqual([-1, 0, 1, 0, -1, 5]); // EIO = 5
      const batcher = new VerifyBatcher(fd, 4096, 1 << 20, 0);
      const bufs = [Buffer.alloc(4096), Buffer.alloc(2 * 4096), Buffer.alloc(4096), Buffer.alloc(4096)];
      const results = await Promise.allSettled([
        batcher.read(bufs[0]!, 7 * 4096, crcs, 7),
        batcher.read(bufs[1]!, 2 * 4096, crcs, 2),
        batcher.read(bufs[2]!, 9 * 4096, crcs, 0), // past the end
        batcher.read(bufs[3]!, 5 * 4096, wrong, 5),
      ]);
      expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as native.NativeError).code))).toEqual([-1, -1, 'EIO', 0]);
      expect(bufs[0]!.equals(data.subarray(7 * 4096))).toBe(true);
      expect(bufs[1]!.equals(data.subarray(2 * 4096, 4 * 4096))).toBe(true);
      // A batch reaching maxBytes goes at once; the rest follows in the same tick's flush.
      const small = new VerifyBatcher(fd, 4096, 4096, 0);
      expect(await Promise.all([small.read(Buffer.alloc(4096), 0, crcs, 0), small.read(Buffer.alloc(4096), 4096, crcs, 1)])).toEqual([-1, -1]);
      // Reads under minBatchRead go alone (their own job), with the same results.
      const solo = new VerifyBatcher(fd, 4096, 1 << 20, 8192);
      expect(await Promise.allSettled([solo.read(Buffer.alloc(4096), 3 * 4096, crcs, 3), solo.read(Buffer.alloc(4096), 5 * 4096, wrong, 5),
        solo.read(Buffer.alloc(4096), 9 * 4096, crcs, 0), solo.read(Buffer.alloc(2 * 4096), 0, crcs, 0)]).then((rs) =>
        rs.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as native.NativeError).code)))).toEqual([-1, 0, 'EIO', -1]);
      expect(() => native.preadVerifyMany(fd, [], 4096)).toThrow(TypeError);
      expect(() => native.preadVerifyMany(fd, [Buffer.alloc(4096), 4096, 0, crcs], 4096)).toThrow(TypeError);
    } finally {
      closeSync(fd);
    }
  });
});
