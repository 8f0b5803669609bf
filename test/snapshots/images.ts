// Deterministic test images: seeded pseudo-random data, zero runs, sizes not
// a multiple of the block size.
import { createHash } from 'node:crypto';
import { writeFileSync, openSync, writeSync, closeSync, readFileSync, truncateSync, statSync } from 'node:fs';

/** Deterministic pseudo-random bytes (SHA-256 counter mode). */
export function prng(seed: string, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let off = 0;
  for (let i = 0; off < length; i++) {
    const d = createHash('sha256').update(`${seed}:${i}`).digest();
    off += d.copy(out, off);
  }
  return out;
}

/** Semi-compressible block: text-like repetition mixed with random bytes. */
export function textLike(seed: string, length: number): Buffer {
  const words = ['block', 'gateway', 'snapshot', 'volume', 'shard', 'manifest', 'object', 'store', '\n', ' '];
  const r = prng(seed, length);
  const out = Buffer.allocUnsafe(length);
  let o = 0;
  for (let i = 0; o < length; i++) o += out.write(words[r[i % length]! % words.length]! + ' ', o);
  return out;
}

/**
 * Writes an image of `size` bytes to `path`: block i (of `bs`) is zero when
 * zero(i) is true (left as a hole), else seeded random data.
 */
export function writeImage(path: string, size: number, bs: number, seed: string, zero: (i: number) => boolean = () => false): void {
  writeFileSync(path, Buffer.alloc(0));
  const fd = openSync(path, 'r+');
  try {
    const n = Math.ceil(size / bs);
    for (let i = 0; i < n; i++) {
      if (zero(i)) continue;
      const len = Math.min(bs, size - i * bs);
      writeSync(fd, i % 3 === 0 ? textLike(`${seed}:${i}`, len) : prng(`${seed}:${i}`, len), 0, len, i * bs);
    }
  } finally { closeSync(fd); }
  truncateSync(path, size); // trailing hole up to the full size
}

/** Overwrites blocks `indexes` of the image with new seeded data. */
export function mutateBlocks(path: string, bs: number, indexes: number[], seed: string): void {
  const fd = openSync(path, 'r+');
  try {
    const size = statSync(path).size;
    for (const i of indexes) {
      const len = Math.min(bs, size - i * bs);
      writeSync(fd, prng(`${seed}:m:${i}`, len), 0, len, i * bs);
    }
  } finally { closeSync(fd); }
}

export function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}
