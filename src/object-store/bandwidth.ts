// BandwidthLimitedObjectStore: an ObjectStore wrapper that limits payload
// bytes per second, separately up (put bodies) and down (get bodies), with a
// token bucket per direction. Limits can be changed at runtime (setLimits);
// a waiting request sees the new rate within 50 ms.
//
// Token bucket: capacity = a quarter second of rate (burst), refilled
// continuously. A request of n bytes waits in FIFO order until the bucket is
// not in debt, then takes n tokens, possibly going into debt (so objects
// larger than the burst pass, and the *next* request pays for them). Over any
// interval the bytes admitted are at most rate * interval + burst + one
// object. Puts are charged before sending; gets after the body arrived (its
// size is unknown before), delaying the answer. Limit 0/undefined = unlimited.
import { abortError } from './keys.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export interface BandwidthLimits {
  /** Bytes/s for put bodies; 0 or undefined = unlimited. */
  upBytesPerSec?: number;
  /** Bytes/s for get bodies; 0 or undefined = unlimited. */
  downBytesPerSec?: number;
}

export class TokenBucket {
  private rate = 0;
  private tokens = 0;
  private last = performance.now();
  private readonly queue: Array<{ n: number; resolve: () => void; reject: (e: unknown) => void; signal?: AbortSignal | undefined }> = [];
  private pumping = false;

  constructor(bytesPerSec?: number) {
    this.setRate(bytesPerSec);
  }

  get bytesPerSec(): number {
    return this.rate;
  }

  setRate(bytesPerSec: number | undefined): void {
    this.refill();
    this.rate = bytesPerSec && bytesPerSec > 0 && Number.isFinite(bytesPerSec) ? bytesPerSec : 0;
    if (this.rate === 0) this.tokens = 0;
    else this.tokens = Math.min(this.tokens, this.burst());
    this.pump();
  }

  private burst(): number {
    return Math.max(1, this.rate / 4);
  }

  private refill(): void {
    const now = performance.now();
    if (this.rate > 0) this.tokens = Math.min(this.burst(), this.tokens + ((now - this.last) / 1000) * this.rate);
    this.last = now;
  }

  /** Wait until `n` bytes may pass. */
  take(n: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(abortError(signal, 'bandwidth limit'));
    if (this.rate === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const entry = { n, resolve, reject, signal };
      this.queue.push(entry);
      signal?.addEventListener(
        'abort',
        () => {
          const i = this.queue.indexOf(entry);
          if (i >= 0) {
            this.queue.splice(i, 1);
            reject(abortError(signal, 'bandwidth limit'));
          }
        },
        { once: true },
      );
      this.pump();
    });
  }

  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    void (async () => {
      try {
        while (this.queue.length > 0) {
          this.refill();
          if (this.rate === 0 || this.tokens >= 0) {
            const e = this.queue.shift()!;
            if (this.rate > 0) this.tokens -= e.n;
            e.resolve();
            continue;
          }
          const waitMs = Math.min(50, (-this.tokens / this.rate) * 1000);
          await new Promise((r) => setTimeout(r, Math.max(1, waitMs)));
        }
      } finally {
        this.pumping = false;
      }
    })();
  }
}

export class BandwidthLimitedObjectStore implements ObjectStore {
  readonly location: string;
  readonly up: TokenBucket;
  readonly down: TokenBucket;

  constructor(
    readonly inner: ObjectStore,
    limits: BandwidthLimits = {},
  ) {
    this.location = inner.location;
    this.up = new TokenBucket(limits.upBytesPerSec);
    this.down = new TokenBucket(limits.downBytesPerSec);
  }

  setLimits(limits: BandwidthLimits): void {
    if ('upBytesPerSec' in limits) this.up.setRate(limits.upBytesPerSec);
    if ('downBytesPerSec' in limits) this.down.setRate(limits.downBytesPerSec);
  }

  get limits(): Required<BandwidthLimits> {
    return { upBytesPerSec: this.up.bytesPerSec, downBytesPerSec: this.down.bytesPerSec };
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    const res = await this.inner.get(key, options);
    await this.down.take(res.body.length, options.signal);
    return res;
  }

  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo> {
    return this.inner.head(key, options);
  }

  async put(key: string, body: Buffer, options: PutOptions = {}): Promise<{ etag: string }> {
    await this.up.take(body.length, options.signal);
    return this.inner.put(key, body, options);
  }

  delete(key: string, options?: { signal?: AbortSignal }): Promise<void> {
    return this.inner.delete(key, options);
  }

  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    return this.inner.list(prefix, options);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
