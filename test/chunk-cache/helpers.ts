// Test helpers for the chunk cache: a seeded PRNG, an in-memory block source
// that counts fetches (total, per key, in flight, peak in flight), and temp
// cache directories.
import { mulberry32 } from '../harness/prng.js';
import { rmSync } from 'node:fs';
import { tempDir } from '../harness/cleanup.js';
import { join } from 'node:path';
import type { Fetcher } from '../../src/chunk-cache/index.js';

export const KiB = 1024;

export { mulberry32 } from '../harness/prng.js';

export function randomBlock(rnd: () => number, size: number): Buffer {
  const b = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE(Math.floor(rnd() * 0x1_0000_0000), i);
  return b;
}

export class BlockSource {
  readonly blocks = new Map<string, Buffer>();
  readonly perKey = new Map<string, number>();
  total = 0;
  inFlight = 0;
  peakInFlight = 0;
  /** Per-fetch latency (ms); 0 = answer on the next microtask. */
  delayMs: number | (() => number) = 0;
  /** Keys whose fetch fails (like an object store outage for that key). */
  readonly failing = new Set<string>();

  constructor(readonly name = 'b') {}

  /** Adds `count` seeded blocks named `${name}${i}`; every `shortEvery`th one is shorter than the block size. */
  fill(count: number, blockSize: number, seed: number, shortEvery = 0): string[] {
    const rnd = mulberry32(seed);
    const keys: string[] = [];
    for (let i = 0; i < count; i++) {
      const size = shortEvery > 0 && i % shortEvery === shortEvery - 1 ? blockSize - 4 * (1 + Math.floor(rnd() * 1000)) : blockSize;
      const key = `${this.name}${i}`;
      this.blocks.set(key, randomBlock(rnd, size));
      keys.push(key);
    }
    return keys;
  }

  fetcher(key: string): Fetcher {
    return async () => {
      this.total++;
      this.perKey.set(key, (this.perKey.get(key) ?? 0) + 1);
      this.inFlight++;
      this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
      try {
        const d = typeof this.delayMs === 'function' ? this.delayMs() : this.delayMs;
        await (d > 0 ? new Promise((res) => setTimeout(res, d)) : Promise.resolve());
        if (this.failing.has(key)) throw new Error(`fetch of ${key} failed`);
        const b = this.blocks.get(key);
        if (!b) throw new Error(`no block ${key}`);
        return Buffer.from(b); // a fresh copy, as an object store returns
      } finally {
        this.inFlight--;
      }
    };
  }

  fetchesOf(key: string): number {
    return this.perKey.get(key) ?? 0;
  }
}

/** A fetcher that must not be called (the block should be a hit). */
export function noFetch(key: string): Fetcher {
  return async () => { throw new Error(`unexpected fetch of ${key}`); };
}

export function tempDirs(): { make(): string; cleanup(): void } {
  const dirs: string[] = [];
  return {
    make() {
      const d = tempDir('bg-chunk-cache-');
      dirs.push(d);
      return join(d, 'cache');
    },
    cleanup() {
      for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
    },
  };
}
