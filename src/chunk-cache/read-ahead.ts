// ReadAhead: bounded sequential read-ahead for one volume's block reads, on
// top of ChunkCache.prefetch. The volume calls access(index) for every block
// it reads; this detects a sequential run and prefetches the blocks ahead.
//
// States: random (fewer than `trigger` consecutive block indexes seen) →
// sequential (prefetching up to `window` blocks past the latest access).
// Invariants:
//   - at most `maxInFlight` prefetches of this stream are outstanding
//     (resolving the key and fetching); the cache also caps prefetches cache-wide;
//   - nothing is prefetched more than `window` blocks past the latest access,
//     nor at or past `blockCount`, and no index twice within one run;
//   - an access that is not the next block ends the run (prefetches already
//     started finish and stay cached);
//   - access() is synchronous, does O(window) work, and never throws.

import { silentLogger, type Logger } from '../log.js';
import type { ChunkCache, Fetcher } from './chunk-cache.js';

export interface PrefetchSource {
  key: string;
  fetch: Fetcher;
}

/** Block index → its cache key and fetcher, or null when there is nothing to fetch (a zero block). */
export type BlockResolver = (index: number) => Promise<PrefetchSource | null>;

export interface ReadAheadOptions {
  /** How many blocks past the latest access to prefetch (default 8). */
  window?: number;
  /** Outstanding prefetches of this stream (default: window). */
  maxInFlight?: number;
  /** Consecutive block indexes (counting the first) before read-ahead starts (default 2). */
  trigger?: number;
  /** Blocks in the volume; nothing at or past this is prefetched (default: unbounded). */
  blockCount?: number;
  logger?: Logger;
}

export class ReadAhead {
  private readonly window: number;
  private readonly maxInFlight: number;
  private readonly trigger: number;
  private readonly blockCount: number;
  private readonly log: Logger;
  private last = -2;
  private run = 0;
  /** Next index this run may prefetch. */
  private next = 0;
  private outstanding = 0;
  private idleWaiters: Array<() => void> = [];

  constructor(private readonly cache: ChunkCache, private readonly resolve: BlockResolver, options: ReadAheadOptions = {}) {
    this.window = options.window ?? 8;
    this.maxInFlight = options.maxInFlight ?? this.window;
    this.trigger = options.trigger ?? 2;
    this.blockCount = options.blockCount ?? Number.MAX_SAFE_INTEGER;
    this.log = (options.logger ?? silentLogger).child({ component: 'read-ahead' });
    for (const [name, v] of [['window', this.window], ['maxInFlight', this.maxInFlight], ['trigger', this.trigger]] as const) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`read-ahead ${name} must be an integer >= 1, got ${v}`);
    }
  }

  /** Prefetches of this stream not finished yet. */
  get inFlight(): number {
    return this.outstanding;
  }

  /** Records a read of block `index` and starts the prefetches it calls for. */
  access(index: number): void {
    if (!Number.isSafeInteger(index) || index < 0) return;
    if (index === this.last + 1) {
      this.run++;
    } else if (index !== this.last) { // re-reading the same block (partial reads) keeps the run
      this.run = 1;
      this.next = index + 1;
    }
    this.last = index;
    if (this.run < this.trigger) return;
    if (this.next <= index) this.next = index + 1;
    const end = Math.min(index + this.window, this.blockCount - 1);
    while (this.next <= end && this.outstanding < this.maxInFlight) this.start(this.next++); // ≤ window passes
  }

  /** Resolves when no prefetch of this stream is outstanding. */
  idle(): Promise<void> {
    if (this.outstanding === 0) return Promise.resolve();
    return new Promise((res) => this.idleWaiters.push(res));
  }

  private start(index: number): void {
    this.outstanding++;
    void (async () => {
      try {
        const src = await this.resolve(index);
        if (src) await this.cache.prefetch(src.key, src.fetch);
      } catch (err) {
        this.log.debug('read-ahead could not resolve a block', { index, err });
      } finally {
        this.outstanding--;
        if (this.outstanding === 0) {
          const waiters = this.idleWaiters;
          this.idleWaiters = [];
          for (const w of waiters) w();
        }
      }
    })();
  }
}
