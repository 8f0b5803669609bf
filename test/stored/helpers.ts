// Helpers for stored-volume tests: a StoredRuntime over a filesystem store
// (optionally behind the fault-injection wrapper), in-process.
import { rmSync } from 'node:fs';
import { tempDir } from '../harness/cleanup.js';
import { join } from 'node:path';
import { Logger } from '../../src/log.js';
import { FaultInjectingObjectStore } from '../../src/object-store/fault.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import type { StoredVolumeConfig } from '../../src/daemon/config.js';
import { StoredRuntime } from '../../src/volumes/stored/runtime.js';

export const MiB = 1024 * 1024;
export const logger = new Logger({ level: (process.env.BLOCKGATE_TEST_LOG as 'debug' | undefined) ?? 'silent', format: 'text' });

export function tmp(prefix = 'bg-stored-'): { dir: string; cleanup: () => void } {
  const dir = tempDir(prefix);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export function volumeConfig(dir: string, name: string, over: Partial<StoredVolumeConfig> & { logSize?: number } = {}): StoredVolumeConfig {
  const { logSize, ...rest } = over;
  return {
    name, mode: 'stored', size: 16 * MiB, disk: join(dir, `${name}.img`), readOnly: false, description: undefined, tls: 'off',
    writeLog: { dir: join(dir, `${name}-log`), size: logSize ?? 64 * MiB }, blockSize: 64 * 1024, snapshots: undefined, restoreFrom: undefined,
    uploadIntervalMs: 200, ...rest,
  };
}

export async function fsRuntime(storeDir: string, options: { faults?: boolean; workers?: number } = {}): Promise<{ rt: StoredRuntime; faults: FaultInjectingObjectStore | undefined }> {
  const fs = await FsObjectStore.open(storeDir);
  const faults = options.faults ? new FaultInjectingObjectStore(fs, { seed: 1 }) : undefined;
  const rt = StoredRuntime.create(faults ?? fs, logger, { uploadWorkers: options.workers ?? 4 });
  return { rt, faults };
}

export function pattern(byte: number, length: number, salt = 0): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (byte + ((i * 31 + salt) >> 9)) & 0xff;
  return b;
}

export { until } from '../harness/until.js';
