// In-memory ObjectStore for snapshot tests: the ObjectStore contract
// (atomic put, ifNoneMatch/ifMatch, sorted list, OBJECT_NOT_FOUND) with an
// injectable clock for lastModified, so GC/session interleavings can be
// driven deterministically. Not for production.
import { createHash } from 'node:crypto';
import { BlockgateError, ErrorCodes } from '../../src/errors.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from '../../src/object-store/object-store.js';

interface Entry { body: Buffer; etag: string; lastModified: Date }

export class MemoryStore implements ObjectStore {
  readonly location = 'memory://';
  readonly objects = new Map<string, Entry>();
  now: () => number = () => Date.now();

  async get(key: string, options?: GetOptions): Promise<GetResult> {
    const e = this.objects.get(key);
    if (!e) throw new BlockgateError(ErrorCodes.OBJECT_NOT_FOUND, `no such key ${key}`);
    let body = e.body;
    if (options?.range) body = body.subarray(options.range.offset, options.range.offset + options.range.length);
    return { body: Buffer.from(body), etag: e.etag, size: e.body.length };
  }

  async head(key: string): Promise<ObjectInfo> {
    const e = this.objects.get(key);
    if (!e) throw new BlockgateError(ErrorCodes.OBJECT_NOT_FOUND, `no such key ${key}`);
    return { key, size: e.body.length, etag: e.etag, lastModified: e.lastModified };
  }

  async put(key: string, body: Buffer, options?: PutOptions): Promise<{ etag: string }> {
    const cur = this.objects.get(key);
    if (options?.ifNoneMatch === '*' && cur) throw new BlockgateError(ErrorCodes.PRECONDITION_FAILED, `${key} exists`);
    if (options?.ifMatch !== undefined && cur?.etag !== options.ifMatch) throw new BlockgateError(ErrorCodes.PRECONDITION_FAILED, `${key} etag mismatch`);
    const etag = createHash('md5').update(body).digest('hex');
    this.objects.set(key, { body: Buffer.from(body), etag, lastModified: new Date(this.now()) });
    return { etag };
  }

  async delete(key: string): Promise<void> {
    this.objects.delete(key);
  }

  async *list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo> {
    const keys = [...this.objects.keys()].filter((k) => k.startsWith(prefix) && (options?.startAfter === undefined || k > options.startAfter)).sort();
    for (const key of keys) {
      const e = this.objects.get(key);
      if (e) yield { key, size: e.body.length, etag: e.etag, lastModified: e.lastModified };
    }
  }

  async close(): Promise<void> {}
}

/** Wraps a store, counting requests and body bytes by operation. */
export class CountingStore implements ObjectStore {
  readonly location: string;
  counts = { get: 0, head: 0, put: 0, delete: 0, list: 0, putBytes: 0, getBytes: 0, blockPutBytes: 0 };
  constructor(readonly inner: ObjectStore) { this.location = inner.location; }
  reset(): void { for (const k of Object.keys(this.counts)) (this.counts as Record<string, number>)[k] = 0; }
  async get(key: string, o?: GetOptions): Promise<GetResult> { this.counts.get++; const r = await this.inner.get(key, o); this.counts.getBytes += r.body.length; return r; }
  async head(key: string, o?: { signal?: AbortSignal }): Promise<ObjectInfo> { this.counts.head++; return this.inner.head(key, o); }
  async put(key: string, body: Buffer, o?: PutOptions): Promise<{ etag: string }> {
    this.counts.put++; this.counts.putBytes += body.length; if (key.startsWith('blocks/')) this.counts.blockPutBytes += body.length;
    return this.inner.put(key, body, o);
  }
  async delete(key: string, o?: { signal?: AbortSignal }): Promise<void> { this.counts.delete++; return this.inner.delete(key, o); }
  list(prefix: string, o?: ListOptions): AsyncIterable<ObjectInfo> { this.counts.list++; return this.inner.list(prefix, o); }
  async close(): Promise<void> { return this.inner.close(); }
}

/**
 * Fault injection: `failPuts(n)` makes the next n puts (optionally matching a
 * key prefix) fail with a retryable STORE_UNAVAILABLE before reaching the
 * inner store; `breakAfterPuts(n)` lets n puts through then fails every
 * later put (a store that "starts failing").
 */
export class FaultStore implements ObjectStore {
  readonly location: string;
  private failNext = 0;
  private failPrefix = '';
  private allowedPuts = Infinity;
  injected = 0;
  constructor(readonly inner: ObjectStore) { this.location = inner.location; }
  failPuts(n: number, prefix = ''): void { this.failNext = n; this.failPrefix = prefix; }
  breakAfterPuts(n: number): void { this.allowedPuts = n; }
  heal(): void { this.failNext = 0; this.allowedPuts = Infinity; }
  async get(key: string, o?: GetOptions): Promise<GetResult> { return this.inner.get(key, o); }
  async head(key: string, o?: { signal?: AbortSignal }): Promise<ObjectInfo> { return this.inner.head(key, o); }
  async put(key: string, body: Buffer, o?: PutOptions): Promise<{ etag: string }> {
    if (this.failNext > 0 && key.startsWith(this.failPrefix)) {
      this.failNext--; this.injected++;
      throw new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, `injected fault on put ${key}`, { retryable: true });
    }
    if (this.allowedPuts <= 0) { this.injected++; throw new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, `injected outage on put ${key}`, { retryable: true }); }
    this.allowedPuts--;
    return this.inner.put(key, body, o);
  }
  async delete(key: string, o?: { signal?: AbortSignal }): Promise<void> { return this.inner.delete(key, o); }
  list(prefix: string, o?: ListOptions): AsyncIterable<ObjectInfo> { return this.inner.list(prefix, o); }
  async close(): Promise<void> { return this.inner.close(); }
}
