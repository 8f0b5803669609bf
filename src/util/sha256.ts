// SHA-256 of block-sized data off the event loop, so hashing (≈ 0.3–0.7 ms per
// 512 KiB here) does not hold the one JavaScript thread that also drives every
// socket. Preferred: the native addon's sha256, which hashes the Buffer in
// place on the libuv thread pool. Fallback: WebCrypto's digest, also a
// thread-pool job but one that first copies its input into fresh memory
// (measured ~0.45 ms of main-thread time per 512 KiB, page faults included).
// Small inputs are hashed inline: the pool hop costs more than it saves.
//
// Invariant: the caller does not modify `data` until the promise settles.
import { createHash, webcrypto } from 'node:crypto';
import { nativeSha256 } from '../native/index.js';

/** At most this many bytes are hashed inline on the calling thread. */
const INLINE_MAX = 16 * 1024;

let native: ((data: Uint8Array) => Promise<Buffer>) | null | undefined;

/** The addon's hash, or null. BLOCKGATE_NATIVE_SHA256=0 is test-only: it forces the WebCrypto fallback (docs/tuning.md). */
function nativeHash(): ((data: Uint8Array) => Promise<Buffer>) | null {
  if (native === undefined) native = (process.env.BLOCKGATE_NATIVE_SHA256 === '0' ? undefined : nativeSha256()) ?? null;
  return native;
}

export async function sha256Async(data: Uint8Array): Promise<Buffer> {
  if (data.byteLength <= INLINE_MAX) return createHash('sha256').update(data).digest();
  const hash = nativeHash();
  if (hash) return hash(data);
  return Buffer.from(await webcrypto.subtle.digest('SHA-256', data));
}

/** Which code hashes block-sized data in this process (for `blockgate status`). */
export function sha256Implementation(): 'native' | 'webcrypto' {
  return nativeHash() ? 'native' : 'webcrypto';
}
