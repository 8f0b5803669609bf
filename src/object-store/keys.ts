// Object key rules shared by every ObjectStore implementation, so that a key
// valid on one store is valid on all of them (the file store cannot hold
// what S3 allows, e.g. "a//b" or "../x"). Pure functions, no state.
//   - a key is 1..1024 UTF-8 bytes, has no NUL or other C0 control byte,
//     does not start with '/', has no empty segment ("a//b", trailing '/'),
//     and no '.' or '..' segment;
//   - a list prefix may be '' or any string without NUL/control bytes that
//     does not start with '/';
//   - key order is UTF-8 byte order (what S3 ListObjectsV2 returns), which
//     differs from JS string (UTF-16) order above U+FFFF.
import { BlockgateError, ErrorCodes } from '../errors.js';

export const MAX_KEY_BYTES = 1024;

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

export function validateKey(key: string): void {
  if (typeof key !== 'string' || key.length === 0) throw invalid(key, 'key is empty');
  if (Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) throw invalid(key, `key is longer than ${MAX_KEY_BYTES} bytes`);
  if (CONTROL.test(key)) throw invalid(key, 'key contains a control character');
  if (key.startsWith('/')) throw invalid(key, 'key is absolute (starts with "/")');
  for (const seg of key.split('/')) {
    if (seg === '') throw invalid(key, 'key has an empty segment ("//" or trailing "/")');
    if (seg === '.' || seg === '..') throw invalid(key, `key has a "${seg}" segment`);
  }
}

export function validatePrefix(prefix: string): void {
  if (typeof prefix !== 'string') throw invalid(String(prefix), 'prefix is not a string');
  if (CONTROL.test(prefix)) throw invalid(prefix, 'prefix contains a control character');
  if (prefix.startsWith('/')) throw invalid(prefix, 'prefix starts with "/"');
}

/** Compare two keys in UTF-8 byte order (S3 list order). */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function invalid(key: string, why: string): BlockgateError {
  return new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid object key ${JSON.stringify(key)}: ${why}`, {
    details: { key },
  });
}

/** Validate a ranged-get range; returns it unchanged. */
export function validateRange(range: { offset: number; length: number } | undefined): void {
  if (range === undefined) return;
  const { offset, length } = range;
  if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid byte range offset=${offset} length=${length}`, {
      details: { offset, length },
    });
  }
}

/** Throws the abort reason as a BlockgateError when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined, what: string): void {
  if (signal?.aborted) throw abortError(signal, what);
}

/**
 * The error an aborted operation reports. A signal aborted by a timeout
 * (AbortSignal.timeout / TimeoutError reason) maps to STORE_TIMEOUT
 * (retryable); any other abort is the caller's choice and is not retryable.
 */
export function abortError(signal: AbortSignal, what: string): BlockgateError {
  const reason: unknown = signal.reason;
  if (reason instanceof BlockgateError) return reason;
  const isTimeout = reason instanceof Error && reason.name === 'TimeoutError';
  return isTimeout
    ? new BlockgateError(ErrorCodes.STORE_TIMEOUT, `${what}: timed out`, { retryable: true, cause: reason })
    : new BlockgateError(ErrorCodes.SHUTTING_DOWN, `${what}: aborted`, { retryable: false, cause: reason });
}

/** Resolves after `ms`, or rejects with abortError(signal, what) as soon as the signal aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortError(signal, what));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(abortError(signal!, what));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
