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

