// RetryingObjectStore: wraps an ObjectStore and retries failures whose
// BlockgateError.retryable is true, with exponential backoff and full jitter
// (delay = random(0, min(maxDelay, base * 2^attempt))), a timeout per attempt
// (an AbortSignal passed to the inner store) and an overall deadline per
// operation. Non-retryable errors (4xx, not found, precondition failed,
// access denied, invalid argument) are returned at once.
//
// States of one operation: attempt -> (retryable failure, time left) sleep ->
// attempt ... -> success | last error. The last error is returned as it was
// thrown by the inner store, with `details.attempts` added.
//
// Ambiguous conditional puts: a put whose attempt failed with STORE_TIMEOUT
// or STORE_UNAVAILABLE may have been applied (request sent, answer lost). If a
// later attempt of the same put gets PRECONDITION_FAILED, the wrapper reads
// the object back (head; get if the ETag is not an MD5) and, when it holds
// exactly our bytes, reports success with its ETag: the state is the one our
// put would have produced. Caveat (docs/object-store.md): if another writer
// stored byte-identical content, both callers see success; callers that need
// to know *who* won must put a unique nonce in the body. A first-attempt
// PRECONDITION_FAILED is always reported as is.
//
// list is retried by resuming after the last key already yielded.
// An attempt that ignores its AbortSignal is waited for, never raced: two
// attempts of one put never overlap.
import { createHash } from 'node:crypto';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../errors.js';
import type { Logger } from '../log.js';
import { abortError, compareKeys, sleep } from './keys.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export interface RetryOptions {
  /** Most attempts per operation, first included (default 10). */
  maxAttempts?: number;
  /** Backoff base (ms, default 50). */
  baseDelayMs?: number;
  /** Backoff cap (ms, default 5 000). */
  maxDelayMs?: number;
  /** Timeout of one attempt (ms, default 30 000). */
  attemptTimeoutMs?: number;
  /** Overall deadline of one operation, all attempts and sleeps (ms, default 120 000). */
  deadlineMs?: number;
  /** Random source in [0, 1) for jitter (tests make it deterministic). */
  random?: () => number;
  /** Called before each sleep (for logs/metrics/tests). */
  onRetry?: (info: RetryInfo) => void;
  logger?: Logger;
}

export interface RetryInfo {
  readonly op: string;
  readonly key: string;
  readonly attempt: number;
  readonly delayMs: number;
  readonly error: BlockgateError;
}

const AMBIGUOUS = new Set<string>([ErrorCodes.STORE_TIMEOUT, ErrorCodes.STORE_UNAVAILABLE]);

export class RetryingObjectStore implements ObjectStore {
  readonly location: string;
  private readonly maxAttempts: number;
  private readonly baseDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly attemptTimeoutMs: number;
  private readonly deadlineMs: number;
  private readonly random: () => number;

  constructor(
    readonly inner: ObjectStore,
    private readonly options: RetryOptions = {},
  ) {
    this.location = inner.location;
    this.maxAttempts = options.maxAttempts ?? 10;
    this.baseDelayMs = options.baseDelayMs ?? 50;
    this.maxDelayMs = options.maxDelayMs ?? 5_000;
    this.attemptTimeoutMs = options.attemptTimeoutMs ?? 30_000;
    this.deadlineMs = options.deadlineMs ?? 120_000;
    this.random = options.random ?? Math.random;
    if (this.maxAttempts < 1) throw new BlockgateError(ErrorCodes.CONFIG, 'retry.maxAttempts must be >= 1');
  }

  /**
   * Run `fn` until it succeeds, fails non-retryably, runs out of attempts or
   * would pass the deadline. `onError` may turn an error into a result.
   */
  private async run<T>(
    op: string,
    key: string,
    signal: AbortSignal | undefined,
    fn: (signal: AbortSignal) => Promise<T>,
    deadline = Date.now() + this.deadlineMs,
    onError?: (err: BlockgateError, attempt: number) => Promise<{ value: T } | undefined>,
  ): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      if (signal?.aborted) throw abortError(signal, `${op} ${key}`);
      const left = deadline - Date.now();
      const attemptSignal = AbortSignal.timeout(Math.max(1, Math.min(this.attemptTimeoutMs, left)));
      const combined = signal ? AbortSignal.any([signal, attemptSignal]) : attemptSignal;
      let error: BlockgateError;
      try {
        return await fn(combined);
      } catch (err) {
        if (signal?.aborted) throw abortError(signal, `${op} ${key}`);
        if (!isBlockgateError(err)) throw err;
        error = err;
        if (attemptSignal.aborted && !error.retryable) {
          // The inner store reported our per-attempt timeout some other way.
          error = new BlockgateError(ErrorCodes.STORE_TIMEOUT, `${op} ${key}: attempt timed out`, { retryable: true, cause: err });
        }
      }
      const handled = onError ? await onError(error, attempt) : undefined;
      if (handled) return handled.value;
      const delay = this.random() * Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (attempt - 1));
      if (!error.retryable || attempt >= this.maxAttempts || Date.now() + delay >= deadline) {
        throw withAttempts(error, attempt);
      }
      this.options.onRetry?.({ op, key, attempt, delayMs: delay, error });
      this.options.logger?.debug('object store retry', { op, key, attempt, delayMs: Math.round(delay), code: error.code });
      await sleep(delay, signal, 'retry backoff');
    }
  }

  get(key: string, options: GetOptions = {}): Promise<GetResult> {
    return this.run('get', key, options.signal, (signal) => this.inner.get(key, { ...options, signal }));
  }

  head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    return this.run('head', key, options.signal, (signal) => this.inner.head(key, { signal }));
  }

  delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.run('delete', key, options.signal, (signal) => this.inner.delete(key, { signal }));
  }

  put(key: string, body: Buffer, options: PutOptions = {}): Promise<{ etag: string }> {
    const conditional = options.ifNoneMatch !== undefined || options.ifMatch !== undefined;
    const deadline = Date.now() + this.deadlineMs;
    let ambiguous = false;
    return this.run(
      'put',
      key,
      options.signal,
      (signal) => this.inner.put(key, body, { ...options, signal }),
      deadline,
      async (err) => {
        if (conditional && ambiguous && err.code === ErrorCodes.PRECONDITION_FAILED) {
          const etag = await this.holdsOurBody(key, body, options.signal, deadline);
          if (etag !== undefined) {
            this.options.logger?.info('ambiguous conditional put had landed; reporting success', { key });
            return { value: { etag } };
          }
        }
        if (AMBIGUOUS.has(err.code)) ambiguous = true;
        return undefined;
      },
    );
  }

  /** The object's ETag if `key` now holds exactly `body`, else undefined. */
  private async holdsOurBody(key: string, body: Buffer, signal: AbortSignal | undefined, deadline: number): Promise<string | undefined> {
    let info: ObjectInfo;
    try {
      info = await this.run('head', key, signal, (s) => this.inner.head(key, { signal: s }), deadline);
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) return undefined;
      throw err;
    }
    if (info.size !== body.length) return undefined;
    const md5 = createHash('md5').update(body).digest('hex');
    if (info.etag === md5) return info.etag;
    if (/^[0-9a-f]{32}$/.test(info.etag)) return undefined; // an MD5, and not ours
    // ETag is not an MD5 (multipart, SSE-KMS): compare the bytes.
    const got = await this.run('get', key, signal, (s) => this.inner.get(key, { signal: s }), deadline);
    return got.body.equals(body) ? got.etag : undefined;
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    let after = options.startAfter;
    const deadline = Date.now() + this.deadlineMs;
    for (let attempt = 1; ; attempt++) {
      try {
        const listOptions: ListOptions = { ...options, ...(after !== undefined ? { startAfter: after } : {}) };
        for await (const info of this.inner.list(prefix, listOptions)) {
          if (after !== undefined && compareKeys(info.key, after) <= 0) continue; // defensive: never repeat
          after = info.key;
          attempt = 0; // progress resets the attempt count
          yield info;
        }
        return;
      } catch (err) {
        if (options.signal?.aborted) throw abortError(options.signal, `list ${prefix}`);
        if (!isBlockgateError(err)) throw err;
        const n = Math.max(attempt, 1);
        const delay = this.random() * Math.min(this.maxDelayMs, this.baseDelayMs * 2 ** (n - 1));
        if (!err.retryable || n >= this.maxAttempts || Date.now() + delay >= deadline) throw withAttempts(err, n);
        this.options.onRetry?.({ op: 'list', key: prefix, attempt: n, delayMs: delay, error: err });
        await sleep(delay, options.signal, 'retry backoff');
        if (attempt === 0) attempt = 1;
      }
    }
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

function withAttempts(err: BlockgateError, attempts: number): BlockgateError {
  if (attempts === 1) return err;
  return new BlockgateError(err.code, `${err.message} (after ${attempts} attempts)`, {
    retryable: err.retryable,
    cause: err,
    details: { ...err.details, attempts },
  });
}

