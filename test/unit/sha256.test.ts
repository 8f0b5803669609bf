// sha256Async: the native in-place hash on the thread pool, and the WebCrypto
// fallback, both agree with node:crypto on every size class.
import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, test, vi } from 'vitest';
import { nativeSha256 } from '../../src/native/index.js';
import { sha256Async } from '../../src/util/sha256.js';

const ref = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const sizes = [0, 1, 16 * 1024, 16 * 1024 + 1, 64 * 1024, 512 * 1024 + 17];

describe('sha256Async', () => {
  test('matches node:crypto for small (inline) and large (thread-pool) inputs, including views', async () => {
    for (const n of sizes) {
      const b = randomBytes(n + 7);
      const view = b.subarray(7);
      expect((await sha256Async(view)).toString('hex')).toBe(ref(view));
      const u8 = new Uint8Array(b.buffer, b.byteOffset + 3, n);
      expect((await sha256Async(u8)).toString('hex')).toBe(ref(u8));
    }
  });

  test('many at once (thread-pool jobs in flight) all come back right', async () => {
    const bufs = Array.from({ length: 64 }, () => randomBytes(256 * 1024));
    const got = await Promise.all(bufs.map((b) => sha256Async(b)));
    got.forEach((d, i) => expect(d.toString('hex')).toBe(ref(bufs[i]!)));
  });

  test('the native addon exports sha256 on this Node, and it rejects non-buffers', async () => {
    const native = nativeSha256();
    expect(native).toBeTypeOf('function');
    const b = randomBytes(300_000);
    expect((await native!(b)).toString('hex')).toBe(ref(b));
    expect(() => native!('not a buffer' as unknown as Uint8Array)).toThrow(/Buffer or Uint8Array/);
  });

  test('without the native hash (BLOCKGATE_NATIVE_SHA256=0) the WebCrypto fallback gives the same digests', async () => {
    vi.resetModules();
    process.env['BLOCKGATE_NATIVE_SHA256'] = '0';
    try {
      const fresh = await import('../../src/util/sha256.js');
      for (const n of sizes) {
        const b = randomBytes(n);
        expect((await fresh.sha256Async(b)).toString('hex')).toBe(ref(b));
      }
    } finally {
      delete process.env['BLOCKGATE_NATIVE_SHA256'];
      vi.resetModules();
    }
  });
});
