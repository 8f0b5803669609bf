// The ObjectStore interface: the only way blockgate talks to S3, the local
// filesystem store, or a wrapper (retry, fault injection, bandwidth limit).
// Invariants every implementation keeps (checked by the compliance suite in
// test/object-store/compliance.ts):
//   - put is atomic: a reader sees the whole old object or the whole new one;
//   - ifNoneMatch '*' fails with PRECONDITION_FAILED when the key exists, and
//     of two racing conditional puts at most one succeeds;
//   - ifMatch fails with PRECONDITION_FAILED unless the current ETag matches;
//   - get/head of a missing key fail with OBJECT_NOT_FOUND; delete of a
//     missing key succeeds;
//   - list yields every key under the prefix once, in lexicographic order;
//   - every failure is a BlockgateError whose `retryable` says whether the
//     same call may succeed later (network, 5xx, throttling, timeouts).
// Bodies are whole Buffers: block objects are at most a few MiB.

export interface ObjectInfo {
  readonly key: string;
  readonly size: number;
  readonly etag: string;
  readonly lastModified: Date;
}

export interface ByteRange {
  readonly offset: number;
  readonly length: number;
}

export interface GetOptions {
  /** Read only this byte range (clamped at the object's end). */
  readonly range?: ByteRange;
  readonly signal?: AbortSignal;
  /**
   * A buffer the body may be read into when it fits (the result's body is then
   * a view of it), so a caller that recycles buffers avoids one allocation per
   * get. A hint: a store may ignore it. Not touched after get() settles.
   */
  readonly into?: Buffer;
}

export interface GetResult {
  readonly body: Buffer;
  readonly etag: string;
  /** Size of the whole object, not of the range. */
  readonly size: number;
}

export interface PutOptions {
  /** '*': create only if the key does not exist. */
  readonly ifNoneMatch?: '*';
  /** Replace only if the current ETag equals this. */
  readonly ifMatch?: string;
  readonly signal?: AbortSignal;
}

export interface ListOptions {
  /** Start after this key (exclusive). */
  readonly startAfter?: string;
  readonly signal?: AbortSignal;
}

export interface ObjectStore {
  /** Human-readable location, e.g. "s3://bucket/prefix" or "file:///var/lib/x". */
  readonly location: string;
  get(key: string, options?: GetOptions): Promise<GetResult>;
  head(key: string, options?: { signal?: AbortSignal }): Promise<ObjectInfo>;
  /**
   * Stores `body` under `key`. Once the promise has resolved, the store holds
   * no reference to `body` (callers recycle the buffer); after a rejection it
   * may still be reading it (a request abandoned mid-send).
   */
  put(key: string, body: Buffer, options?: PutOptions): Promise<{ etag: string }>;
  delete(key: string, options?: { signal?: AbortSignal }): Promise<void>;
  list(prefix: string, options?: ListOptions): AsyncIterable<ObjectInfo>;
  close(): Promise<void>;
}
