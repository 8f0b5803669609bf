// CountingObjectStore: an ObjectStore wrapper that counts requests, failures
// and payload bytes per operation, for tests ("an incremental snapshot sent
// about 1% of the volume's bytes") and metrics.
// State: one counter record per operation; snapshot() copies it, reset()
// zeroes it. Counts are taken when a call settles:
//   - get: bytesIn += body length returned; put: bytesOut += body length sent
//     (counted even if the put fails, since the bytes went out);
//   - list: one request per list() call that was iterated, `items` per key yielded.
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export interface OpCounts {
  requests: number;
  errors: number;
  bytesIn: number;
  bytesOut: number;
  items: number;
}

export type Counts = Record<'get' | 'put' | 'head' | 'delete' | 'list', OpCounts>;

function zero(): Counts {
  const z = (): OpCounts => ({ requests: 0, errors: 0, bytesIn: 0, bytesOut: 0, items: 0 });
  return { get: z(), put: z(), head: z(), delete: z(), list: z() };
}

export class CountingObjectStore implements ObjectStore {
  readonly location: string;
  private counts: Counts = zero();

  constructor(readonly inner: ObjectStore) {
    this.location = inner.location;
  }

  snapshot(): Counts {
    return structuredClone(this.counts);
  }

  reset(): void {
    this.counts = zero();
  }

  get totalBytesOut(): number {
    return this.counts.put.bytesOut;
  }

  get totalBytesIn(): number {
    return this.counts.get.bytesIn;
  }

  get totalRequests(): number {
    return Object.values(this.counts).reduce((a, c) => a + c.requests, 0);
  }

  private async count<T>(op: keyof Counts, fn: () => Promise<T>, bytesOut = 0): Promise<T> {
    const c = this.counts[op];
    c.requests++;
    c.bytesOut += bytesOut;
    try {
      return await fn();
    } catch (err) {
      this.counts[op].errors++;
      throw err;
    }
  }

  async get(key: string, options?: GetOptions): Promise<GetResult> {
    const res = await this.count('get', () => this.inner.get(key, options));
    this.counts.get.bytesIn += res.body.length;
    return res;
  }

  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo> {
    return this.count('head', () => this.inner.head(key, options));
  }

  put(key: string, body: Buffer, options?: PutOptions): Promise<{ etag: string }> {
    return this.count('put', () => this.inner.put(key, body, options), body.length);
  }

  delete(key: string, options?: { signal?: AbortSignal }): Promise<void> {
    return this.count('delete', () => this.inner.delete(key, options));
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    this.counts.list.requests++;
    try {
      for await (const info of this.inner.list(prefix, options)) {
        this.counts.list.items++;
        yield info;
      }
    } catch (err) {
      this.counts.list.errors++;
      throw err;
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
