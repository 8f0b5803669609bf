// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI,
// ext4 and SCTP; the write log's records and the chunk cache's units. Three
// implementations of the same function, picked by length and availability:
//   - the native addon's (src/native): AVX-512 VPCLMULQDQ folding or SSE4.2
//     crc32 in three chains, by CPU: 0.1–0.2 us per 4 KiB, ~56 GB/s on 1 MiB
//     with AVX-512 on the project machine;
//   - @node-rs/crc32's crc32c when the addon is not built: ~1 us per 4 KiB,
//     ~7 GB/s on 1 MiB, a ~300 ns call overhead;
//   - a slice-by-8 table in JS: ~80 ns for a 48-byte record header, ~230 MiB/s
//     on bulk data.
// Invariant: all give identical results for every input and chain the same
// way: crc32c(b, crc32c(a)) === crc32c(a ++ b) (test/chunk-cache/native-verify.test.ts,
// test/write-log/format.test.ts).

import { crc32c as nodeRsCrc32c } from '@node-rs/crc32';
import * as native from '../native/index.js';

const TABLE = new Int32Array(8 * 256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  TABLE[n] = c;
}
for (let n = 0; n < 256; n++) {
  let c = TABLE[n]!;
  for (let k = 1; k < 8; k++) {
    c = TABLE[c & 0xff]! ^ (c >>> 8);
    TABLE[k * 256 + n] = c;
  }
}

/** Table-driven CRC32C of `buf` continuing from `initial` (the CRC of the preceding bytes). */
export function crc32cTable(buf: Uint8Array, initial = 0): number {
  const T = TABLE;
  let c = ~initial;
  let i = 0;
  const n = buf.length;
  for (; i + 8 <= n; i += 8) {
    const a = c ^ (buf[i]! | (buf[i + 1]! << 8) | (buf[i + 2]! << 16) | (buf[i + 3]! << 24));
    c = T[1792 + (a & 0xff)]! ^ T[1536 + ((a >>> 8) & 0xff)]! ^ T[1280 + ((a >>> 16) & 0xff)]! ^ T[1024 + (a >>> 24)]!
      ^ T[768 + buf[i + 4]!]! ^ T[512 + buf[i + 5]!]! ^ T[256 + buf[i + 6]!]! ^ T[buf[i + 7]!]!;
  }
  for (; i < n; i++) c = T[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

const NATIVE_MIN = 256;

const bulkCrc32c: (buf: Uint8Array, initial: number) => number = native.nativeAvailable()
  ? native.crc32c
  : (buf, initial) => nodeRsCrc32c(buf as Buffer, initial) >>> 0;

/** CRC32C of `buf`, continuing from `initial`. */
export function crc32c(buf: Uint8Array, initial = 0): number {
  if (buf.length >= NATIVE_MIN) return bulkCrc32c(buf, initial);
  return crc32cTable(buf, initial);
}

/**
 * Which code computes bulk CRC32C in this process (for `blockgate status`):
 * the addon's avx512 / sse42 / table (BLOCKGATE_NATIVE_CRC, test-only, caps
 * it), or node-rs when the addon is not built.
 */
export function crc32cImplementation(): 'avx512' | 'sse42' | 'table' | 'node-rs' | 'unknown' {
  return native.nativeAvailable() ? native.crc32cPath() : 'node-rs';
}
