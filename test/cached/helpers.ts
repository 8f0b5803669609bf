// Helpers for cached-volume tests: a CachedRuntime over a filesystem store
// (optionally behind the fault-injection wrapper), in-process.
import { rmSync } from 'node:fs';
import { tempDir } from '../harness/cleanup.js';
import { join } from 'node:path';
import { Logger } from '../../src/log.js';
import { FaultInjectingObjectStore } from '../../src/object-store/fault.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import type { CachedVolumeConfig } from '../../src/volumes/cached/config.js';
import { CachedRuntime } from '../../src/volumes/cached/runtime.js';

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const logger = new Logger({ level: (process.env.BLOCKGATE_TEST_LOG as 'debug' | undefined) ?? 'silent', format: 'text' });

export function tmp(prefix = 'bg-cached-'): { dir: string; cleanup: () => void } {
  const dir = tempDir(prefix);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function volumeConfig(dir: string, name: string, over: Partial<CachedVolumeConfig> = {}): CachedVolumeConfig {
  return {
    name, mode: 'cached', size: 16 * MiB, readOnly: false, description: undefined, tls: 'off',
    cache: { dir: join(dir, `${name}-cache`), size: 8 * MiB }, writeLog: { dir: join(dir, `${name}-log`), size: 32 * MiB },
    blockSize: 64 * KiB, fromSnapshot: undefined, uploadIntervalMs: 100, readAheadBlocks: 4,
    lease: { ttlMs: 60_000, takeover: 'expired' }, ...over,
  };
}

export async function fsStore(storeDir: string, options: { faults?: boolean } = {}): Promise<{ store: ObjectStore; faults: FaultInjectingObjectStore | undefined }> {
  const fs = await FsObjectStore.open(storeDir);
  const faults = options.faults ? new FaultInjectingObjectStore(fs, { seed: 1 }) : undefined;
  return { store: faults ?? fs, faults };
}

export function runtime(store: ObjectStore, dataDir: string, over: { leaseRenewMs?: number } = {}): CachedRuntime {
  return CachedRuntime.create(store, logger, { dataDir, uploadWorkers: 4, ...over });
}

export function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i += 4) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    b.writeUInt32LE(x, i - (i + 4 > length ? i + 4 - length : 0));
  }
  return b;
}

export { until } from '../harness/until.js';
