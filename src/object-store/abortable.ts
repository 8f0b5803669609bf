// AbortableObjectStore: an ObjectStore wrapper with one kill switch. Every
// operation runs under the caller's AbortSignal (if any) combined with the
// wrapper's own; abort() cancels every operation in flight and fails every
// later one at once with SHUTTING_DOWN. The daemon puts it above the shared
// store and pulls it when its shutdown grace period is over, so nothing that
// talks to an unreachable store (an uploader's put, a retry loop's backoff
// sleep, a cached read's fetch, a lease renewal) can hold the exit up.
// States: open -> aborted (terminal). Cancellation reaches as deep as the
// stores below honour signals: RetryingObjectStore stops retrying and
// sleeping, the S3 store cancels the request, the bandwidth limiter stops
// waiting.
import { BlockgateError, ErrorCodes } from '../errors.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';
import { throwIfAborted } from './keys.js';

export class AbortableObjectStore implements ObjectStore {
  readonly location: string;
  private readonly controller = new AbortController();

  constructor(readonly inner: ObjectStore) {
    this.location = inner.location;
  }

  get aborted(): boolean {
    return this.controller.signal.aborted;
  }

  /** Cancels every operation in flight and refuses every later one (idempotent). */
  abort(why = 'the object store was cut off (shutting down)'): void {
    if (this.aborted) return;
    this.controller.abort(new BlockgateError(ErrorCodes.SHUTTING_DOWN, why, { retryable: false }));
  }

  /** The caller's signal combined with the kill switch; throws at once when the switch is pulled. */
  private signal(caller: AbortSignal | undefined, what: string): AbortSignal {
    const own = this.controller.signal;
    throwIfAborted(own, what);
    return caller ? AbortSignal.any([caller, own]) : own;
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    return this.inner.get(key, { ...options, signal: this.signal(options.signal, `get ${key}`) });
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    return this.inner.head(key, { signal: this.signal(options.signal, `head ${key}`) });
  }

  async put(key: string, body: Buffer, options: PutOptions = {}): Promise<{ etag: string }> {
    return this.inner.put(key, body, { ...options, signal: this.signal(options.signal, `put ${key}`) });
  }

  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.inner.delete(key, { signal: this.signal(options.signal, `delete ${key}`) });
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    yield* this.inner.list(prefix, { ...options, signal: this.signal(options.signal, `list ${prefix}`) });
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
