// Configuration of a `mode: cached` volume. One schema (config/volumes.ts
// cachedVolumeSchema) reads it from the YAML, the admin API's POST
// /v1/volumes body and the persisted run-time volume files, so the three
// agree on keys, defaults and messages.
import { isAbsolute, resolve } from 'node:path';
import { ErrorCodes } from '../../errors.js';
import type { TakeoverPolicy } from '../../fencing/lease.js';
import { parseWith } from '../../config/fields.js';
import { cachedVolumeSchema, withTls } from '../../config/volumes.js';
import { formatDuration } from '../../util/duration.js';

export interface CachedVolumeConfig {
  readonly name: string;
  readonly mode: 'cached';
  /** Required for a new empty volume; must match the store's record otherwise. */
  readonly size: number | undefined;
  readonly readOnly: false;
  readonly description: string | undefined;
  readonly tls: 'off' | 'on' | 'require';
  readonly cache: { readonly dir: string; readonly size: number };
  readonly writeLog: { readonly dir: string; readonly size: number };
  /** New volumes only (default 512 KiB). */
  readonly blockSize: number | undefined;
  /** Create the volume from this snapshot (snap-... or a single-volume vsnap-...) when it does not exist in the store. */
  readonly fromSnapshot: string | undefined;
  /** Cut an upload marker at most this often. */
  readonly uploadIntervalMs: number;
  /** Sequential read-ahead window in blocks (0 = off). */
  readAheadBlocks: number;
  readonly lease: { readonly ttlMs: number; readonly takeover: TakeoverPolicy };
}

/**
 * A whole cached volume entry from JSON (admin API body, persisted file):
 * the YAML's schema (config/volumes.ts cachedVolumeSchema), mode defaulting
 * to cached, tls to off; relative paths resolve against `baseDir`.
 */
export function cachedVolumeFromJson(body: unknown, baseDir: string, key = 'volume'): CachedVolumeConfig {
  const resolvePath = (p: string): string => (isAbsolute(p) ? p : resolve(baseDir, p));
  const input = body !== null && typeof body === 'object' && !Array.isArray(body) && (body as { mode?: unknown }).mode === undefined
    ? { ...body, mode: 'cached' } : body;
  return withTls(parseWith(cachedVolumeSchema(resolvePath), input, { code: ErrorCodes.CONFIG, prefix: key }), 'off');
}

/** The JSON form of a config (inverse of cachedVolumeFromJson), for persisting run-time volumes. */
export function cachedVolumeToJson(c: CachedVolumeConfig): Record<string, unknown> {
  return {
    name: c.name, mode: 'cached', ...(c.size !== undefined ? { size: c.size } : {}), ...(c.description ? { description: c.description } : {}), tls: c.tls,
    cache: { dir: c.cache.dir, size: c.cache.size }, writeLog: { dir: c.writeLog.dir, size: c.writeLog.size },
    ...(c.blockSize !== undefined ? { blockSize: c.blockSize } : {}), ...(c.fromSnapshot ? { fromSnapshot: c.fromSnapshot } : {}),
    uploadInterval: formatDuration(c.uploadIntervalMs), readAhead: c.readAheadBlocks, lease: { ttl: formatDuration(c.lease.ttlMs), takeover: c.lease.takeover },
  };
}
