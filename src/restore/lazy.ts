// LazyRestore: the restore state of a stored volume being re-created from a
// snapshot while it is served. A block is "restored" when the local disk
// holds its content (bit set in the RestoreBitmap). Reads and writes of an
// unrestored block first fetch it (single flight: concurrent requests for one
// block share one fetch); a background filler fetches the rest with bounded
// concurrency; progress is reported; the bitmap is persisted (after a disk
// fdatasync) every `persistMs` and at close, so a restart resumes where the
// restore stopped.
//
// States: filling -> complete (every bit set; the owner drops the bitmap) |
// stopped (close). The fetch itself is the owner's callback (it knows where
// the content comes from: the volume's current root overlaid with its log).
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { RestoreBitmap } from './bitmap.js';

export interface LazyRestoreOptions {
  bitmap: RestoreBitmap;
  bitmapPath: string;
  /** Fetches block i from the store and writes it to the disk (not durable yet). */
  fetch: (index: number) => Promise<void>;
  /** Makes the disk durable (fdatasync). */
  syncDisk: () => Promise<void>;
  onComplete: () => Promise<void>;
  logger: Logger;
  concurrency?: number;
  persistMs?: number;
  blockSize: number;
}

export interface LazyRestoreProgress {
  restoredBlocks: number;
  totalBlocks: number;
  fetchedBlocks: number;
  fetchedBytes: number;
  onDemandFetches: number;
  startedAt: string;
  complete: boolean;
  lastError: string | null;
}

export class LazyRestore {
  private readonly inflight = new Map<number, Promise<void>>();
  private stopped = false;
  private filler: Promise<void> | undefined;
  private persistTimer: NodeJS.Timeout | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private dirty = false;
  private fetched = 0;
  private onDemand = 0;
  private lastError: string | null = null;
  private readonly startedAt = new Date().toISOString();
  private completed = false;

  constructor(private readonly o: LazyRestoreOptions) {}

  get bitmap(): RestoreBitmap {
    return this.o.bitmap;
  }

  get complete(): boolean {
    return this.completed;
  }

  isRestored(i: number): boolean {
    return this.completed || this.o.bitmap.has(i);
  }

  /** Makes sure blocks first..last are on the disk. */
  async ensure(first: number, last: number): Promise<void> {
    if (this.completed) return;
    const waits: Promise<void>[] = [];
    for (let i = first; i <= last; i++) {
      if (!this.o.bitmap.has(i)) {
        if (!this.inflight.has(i)) this.onDemand++;
        waits.push(this.fetchOnce(i));
      }
    }
    if (waits.length > 0) await Promise.all(waits);
  }

  private fetchOnce(i: number): Promise<void> {
    let p = this.inflight.get(i);
    if (p) return p;
    p = (async () => {
      try {
        await this.o.fetch(i);
        this.o.bitmap.set(i);
        this.dirty = true;
        this.fetched++;
      } finally {
        this.inflight.delete(i);
      }
    })();
    this.inflight.set(i, p);
    return p;
  }

  start(): void {
    this.persistTimer = setInterval(() => { void this.persist().catch(() => undefined); }, this.o.persistMs ?? 2000);
    this.persistTimer.unref();
    this.filler = this.fill();
  }

  private async fill(): Promise<void> {
    const conc = this.o.concurrency ?? 8;
    let cursor = 0;
    let backoff = 500;
    while (!this.stopped) {
      const batch: number[] = [];
      while (batch.length < conc) {
        const i = this.o.bitmap.nextMissing(cursor);
        if (i < 0) break;
        batch.push(i);
        cursor = i + 1;
      }
      if (batch.length === 0) {
        if (this.o.bitmap.complete) break;
        cursor = 0; // wrap: retry blocks that failed
        continue;
      }
      try {
        await Promise.all(batch.map((i) => this.fetchOnce(i)));
        backoff = 500;
      } catch (err) {
        this.lastError = errorMessage(err);
        this.o.logger.warn('lazy restore: fetch failed; retrying', { err: this.lastError, backoffMs: backoff });
        cursor = batch[0]!;
        await new Promise((r) => setTimeout(r, backoff).unref());
        backoff = Math.min(30_000, backoff * 2);
      }
    }
    if (!this.stopped && this.o.bitmap.complete) {
      await this.persist();
      this.completed = true;
      if (this.persistTimer) clearInterval(this.persistTimer);
      this.o.logger.info('lazy restore complete', { blocks: this.o.bitmap.blocks, fetched: this.fetched });
      await this.o.onComplete();
    }
  }

  /** fdatasync the disk, then save the bits that were set before it. */
  persist(): Promise<void> {
    const run = this.persisting.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      const image = this.o.bitmap.snapshot();
      try {
        await this.o.syncDisk();
        this.o.bitmap.save(this.o.bitmapPath, image);
      } catch (err) {
        this.dirty = true;
        throw err;
      }
    });
    this.persisting = run.catch(() => undefined);
    return run;
  }

  progress(): LazyRestoreProgress {
    return {
      restoredBlocks: this.o.bitmap.restored, totalBlocks: this.o.bitmap.blocks, fetchedBlocks: this.fetched,
      fetchedBytes: this.fetched * this.o.blockSize, onDemandFetches: this.onDemand, startedAt: this.startedAt,
      complete: this.completed, lastError: this.lastError,
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.persistTimer) clearInterval(this.persistTimer);
    await this.filler?.catch(() => undefined);
    await Promise.allSettled([...this.inflight.values()]);
    await this.persist().catch((err) => this.o.logger.warn('lazy restore: could not persist the bitmap', { err: errorMessage(err) }));
  }
}
