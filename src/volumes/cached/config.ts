// Configuration of a `mode: cached` volume: parsed here (config.ts calls
// parseCachedVolume for its mode switch) and also from the admin API's
// POST /v1/volumes body and the persisted run-time volume files, so the
// three agree on keys, defaults and messages.
import { isAbsolute, resolve } from 'node:path';
import { BlockgateError, ErrorCodes } from '../../errors.js';
import type { TakeoverPolicy } from '../../fencing/lease.js';
import { parseSize } from '../../util/size.js';

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

export const CACHED_VOLUME_KEYS = [
  'name', 'mode', 'size', 'description', 'tls', 'cache', 'writeLog', 'blockSize', 'fromSnapshot', 'uploadInterval', 'readAhead', 'lease',
] as const;

type Obj = Record<string, unknown>;

function fail(key: string, message: string): never {
  throw new BlockgateError(ErrorCodes.CONFIG, `${key}: ${message}`);
}

function obj(value: unknown, key: string): Obj {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(key, 'must be a mapping');
  return value as Obj;
}

function onlyKeys(o: Obj, key: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(`${key}.${k}`, `unknown key (allowed: ${allowed.join(', ')})`);
}

function str(o: Obj, k: string, key: string): string | undefined {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || v === '') fail(`${key}.${k}`, 'must be a non-empty string');
  return v;
}

function size(v: unknown, key: string, min: number): number {
  const n = typeof v === 'string' || typeof v === 'number' ? parseSize(v) : undefined;
  if (n === undefined || n < min) fail(key, `'${String(v)}' is not a size of at least ${min} bytes (e.g. 512MiB, 20GiB)`);
  return n;
}

function duration(v: unknown, key: string, dfltMs: number): number {
  if (v === undefined) return dfltMs;
  const m = typeof v === 'number' ? [String(v), String(v), 's'] : /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(String(v).trim());
  if (!m) fail(key, `'${String(v)}' is not a duration (e.g. 30s, 500ms, 5m)`);
  const mult = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  return Math.round(Number(m[1]) * mult);
}

/**
 * The mode-specific part of a cached volume entry `v` (at config path `key`);
 * `path` resolves relative paths (against the config file's directory).
 */
export function parseCachedVolume(v: Obj, key: string, path: (p: string) => string): Omit<CachedVolumeConfig, 'name' | 'mode' | 'description' | 'tls' | 'readOnly'> {
  onlyKeys(v, key, CACHED_VOLUME_KEYS);
  const section = (k: 'cache' | 'writeLog', example: string): { dir: string; size: number } => {
    const s = obj(v[k] ?? fail(`${key}.${k}`, `is required ({dir, size}, e.g. {dir: /var/lib/blockgate/${example}, size: 20GiB})`), `${key}.${k}`);
    onlyKeys(s, `${key}.${k}`, ['dir', 'size']);
    const dir = str(s, 'dir', `${key}.${k}`) ?? fail(`${key}.${k}.dir`, 'is required');
    if (s.size === undefined) fail(`${key}.${k}.size`, 'is required (e.g. 20GiB)');
    return { dir: path(dir), size: size(s.size, `${key}.${k}.size`, 1024 * 1024) };
  };
  const cache = section('cache', 'cache/NAME');
  const writeLog = section('writeLog', 'log/NAME');
  if (cache.dir === writeLog.dir) fail(`${key}.cache.dir`, 'must differ from writeLog.dir');
  let volSize: number | undefined;
  if (v.size !== undefined && v.size !== null) volSize = size(v.size, `${key}.size`, 1);
  let blockSize: number | undefined;
  if (v.blockSize !== undefined) {
    const bs = size(v.blockSize, `${key}.blockSize`, 1);
    if (bs < 64 * 1024 || bs > 4 * 1024 * 1024 || (bs & (bs - 1)) !== 0) fail(`${key}.blockSize`, `'${String(v.blockSize)}' must be a power of two between 64KiB and 4MiB`);
    blockSize = bs;
  }
  if (cache.size < (blockSize ?? 512 * 1024)) fail(`${key}.cache.size`, 'must hold at least one block (give it thousands)');
  const fromSnapshot = str(v, 'fromSnapshot', key);
  if (fromSnapshot !== undefined && !/^v?snap-[0-9a-f]+$/.test(fromSnapshot)) fail(`${key}.fromSnapshot`, `'${fromSnapshot}' is not a snapshot id (snap-... or vsnap-...)`);
  if (volSize === undefined && fromSnapshot === undefined) {
    // Allowed: an existing volume (its size is in the store); a new one fails at open with a clear message.
  }
  const ra = v.readAhead ?? 8;
  if (typeof ra !== 'number' || !Number.isInteger(ra) || ra < 0 || ra > 1024) fail(`${key}.readAhead`, 'must be a number of blocks in 0..1024');
  let lease: CachedVolumeConfig['lease'] = { ttlMs: 60_000, takeover: 'expired' };
  if (v.lease !== undefined && v.lease !== null) {
    const l = obj(v.lease, `${key}.lease`);
    onlyKeys(l, `${key}.lease`, ['ttl', 'takeover']);
    const ttlMs = duration(l.ttl, `${key}.lease.ttl`, 60_000);
    if (ttlMs < 1000) fail(`${key}.lease.ttl`, 'must be at least 1s');
    const takeover = (l.takeover ?? 'expired') as TakeoverPolicy;
    if (!['never', 'expired', 'force'].includes(takeover)) fail(`${key}.lease.takeover`, `must be one of never, expired, force (got '${String(l.takeover)}')`);
    lease = { ttlMs, takeover };
  }
  return {
    size: volSize, cache, writeLog, blockSize, fromSnapshot,
    uploadIntervalMs: duration(v.uploadInterval, `${key}.uploadInterval`, 1000),
    readAheadBlocks: ra, lease,
  };
}

/** A whole cached volume entry from JSON (admin API body, persisted file); relative paths resolve against `baseDir`. */
export function cachedVolumeFromJson(body: unknown, baseDir: string, key = 'volume'): CachedVolumeConfig {
  const v = obj(body, key);
  const name = str(v, 'name', key) ?? fail(`${key}.name`, 'is required');
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(name)) fail(`${key}.name`, `'${name}' must be 1-128 characters of letters, digits, '.', '_' or '-'`);
  if ((v.mode ?? 'cached') !== 'cached') fail(`${key}.mode`, `only 'cached' volumes can be created at run time (got '${String(v.mode)}')`);
  const tls = (v.tls ?? 'off') as CachedVolumeConfig['tls'];
  if (!['off', 'on', 'require'].includes(tls)) fail(`${key}.tls`, 'must be one of off, on, require');
  const rest = parseCachedVolume(v, key, (p) => (isAbsolute(p) ? p : resolve(baseDir, p)));
  return { name, mode: 'cached', readOnly: false, description: str(v, 'description', key), tls, ...rest };
}

/** The JSON form of a config (inverse of cachedVolumeFromJson), for persisting run-time volumes. */
export function cachedVolumeToJson(c: CachedVolumeConfig): Record<string, unknown> {
  return {
    name: c.name, mode: 'cached', ...(c.size !== undefined ? { size: c.size } : {}), ...(c.description ? { description: c.description } : {}), tls: c.tls,
    cache: { dir: c.cache.dir, size: c.cache.size }, writeLog: { dir: c.writeLog.dir, size: c.writeLog.size },
    ...(c.blockSize !== undefined ? { blockSize: c.blockSize } : {}), ...(c.fromSnapshot ? { fromSnapshot: c.fromSnapshot } : {}),
    uploadInterval: `${c.uploadIntervalMs}ms`, readAhead: c.readAheadBlocks, lease: { ttl: `${c.lease.ttlMs}ms`, takeover: c.lease.takeover },
  };
}
