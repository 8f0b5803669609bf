// MeteredObjectStore: an ObjectStore wrapper that tells an observer about
// every request when it settles: operation, duration, success, payload bytes
// (get: body bytes received; put: body bytes sent, counted even when the put
// fails). A list is one request from its first page to the end (or the
// failure) of the iteration. The observer is the daemon's metrics; this file
// knows nothing about Prometheus. No state of its own.
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export type StoreOp = 'get' | 'put' | 'head' | 'delete' | 'list';

export interface StoreObserver {
  requestDone(op: StoreOp, seconds: number, ok: boolean, bytes: number): void;
}

export class MeteredObjectStore implements ObjectStore {
  readonly location: string;

  constructor(readonly inner: ObjectStore, private readonly observer: StoreObserver) {
    this.location = inner.location;
  }

  private async timed<T>(op: StoreOp, fn: () => Promise<T>, bytes: (result: T | undefined) => number): Promise<T> {
    const started = performance.now();
    let result: T | undefined;
    let ok = false;
    try {
      result = await fn();
      ok = true;
      return result;
    } finally {
      this.observer.requestDone(op, (performance.now() - started) / 1000, ok, bytes(result));
    }
  }

  get(key: string, options?: GetOptions): Promise<GetResult> {
    return this.timed('get', () => this.inner.get(key, options), (r) => r?.body.length ?? 0);
  }

  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo> {
    return this.timed('head', () => this.inner.head(key, options), () => 0);
  }

  put(key: string, body: Buffer, options?: PutOptions): Promise<{ etag: string }> {
    return this.timed('put', () => this.inner.put(key, body, options), () => body.length);
  }

  delete(key: string, options?: { signal?: AbortSignal }): Promise<void> {
    return this.timed('delete', () => this.inner.delete(key, options), () => 0);
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    const started = performance.now();
    let ok = true;
    try {
      yield* this.inner.list(prefix, options);
    } catch (err) {
      ok = false;
      throw err;
    } finally {
      // Also reached when the consumer stops early (return()): the listing then counts as done.
      this.observer.requestDone('list', (performance.now() - started) / 1000, ok, 0);
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
