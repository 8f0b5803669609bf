// What `blockgate status` reports (and /metrics reads: metrics.ts), gathered from live state.
import type { GatewayStatus } from '../control-plane/agent/agent.js';
import { tuning, type Tuning } from '../config/tuning.js';
import { nativeAddonInfo } from '../native/index.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { S3ObjectStore } from '../object-store/s3.js';
import { crc32cImplementation } from '../util/crc32c.js';
import { sha256Implementation } from '../util/sha256.js';
import type { NbdExport } from '../nbd/export.js';
import type { ConnectionInfo, NbdServer } from '../nbd/server.js';

export interface VolumeStatus {
  readonly name: string;
  readonly mode: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly tls: string;
  readonly connections: number;
  readonly requests: Record<string, number>;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly errors: number;
  /** Mode-specific state (stored: log use, upload lag/throughput, last snapshot, restore progress). */
  readonly details?: Record<string, unknown>;
}

/** Which implementation each hot data path runs in this process (docs/tuning.md). */
export interface DataPaths {
  /** The native addon: where it loaded from, or why it did not (then zero/trim are emulated, no RWF_NOWAIT). */
  readonly nativeAddon: { readonly loaded: boolean; readonly path?: string; readonly error?: string };
  /** Bulk CRC32C (write log, chunk cache): the addon's avx512 / sse42 / table, or node-rs without the addon. */
  readonly crc32c: string;
  /** SHA-256 of blocks: the addon's (OpenSSL, in place) or WebCrypto (copies its input). */
  readonly sha256: 'native' | 'webcrypto';
  /** RWF_NOWAIT fast path in bytes for raw volumes and chunk caches (0 = off; off without the addon). */
  readonly nowaitMax: number;
  /** S3 GET/PUT/HEAD as direct signed requests: on, off, or none (the store is not S3). */
  readonly s3DirectRequests: 'on' | 'off' | 'none';
  /** The tuning: section in force. */
  readonly tuning: Tuning;
}

export interface DaemonStatus {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly listeners: readonly string[];
  readonly volumes: readonly VolumeStatus[];
  readonly connections: readonly ConnectionInfo[];
  readonly gateway?: GatewayStatus;
  readonly dataPaths: DataPaths;
}

export interface StatusSource {
  /** The gateway agent's activation/control-channel state, when a control: section is configured. */
  gateway?: () => GatewayStatus;
  readonly version: string;
  readonly startedAt: Date;
  readonly addresses: readonly string[];
  readonly server: NbdServer;
  readonly exports: readonly NbdExport[];
  readonly modes: ReadonlyMap<string, string>;
  /** Mode-specific details of a volume, when its mode has any. */
  readonly details?: (name: string) => Record<string, unknown> | undefined;
  /** The shared object store (status reports whether its S3 requests go direct). */
  readonly store?: ObjectStore | undefined;
}

/** The S3 store under the wrappers (bandwidth, retry, counting: each keeps its `inner`). */
function s3Under(store: ObjectStore | undefined): S3ObjectStore | undefined {
  for (let s: unknown = store, depth = 0; s !== undefined && depth < 8; s = (s as { inner?: unknown }).inner, depth++) {
    if (s instanceof S3ObjectStore) return s;
  }
  return undefined;
}

export function collectDataPaths(store?: ObjectStore): DataPaths {
  const addon = nativeAddonInfo();
  const t = tuning();
  const s3 = s3Under(store);
  return {
    nativeAddon: addon.loaded ? { loaded: true, path: addon.path } : { loaded: false, error: addon.error },
    crc32c: crc32cImplementation(),
    sha256: sha256Implementation(),
    nowaitMax: addon.loaded ? t.nowaitMax : 0,
    s3DirectRequests: s3 === undefined ? 'none' : s3.directRequests ? 'on' : 'off',
    tuning: t,
  };
}

export function collectStatus(src: StatusSource): DaemonStatus {
  const connections = src.server.connections();
  return {
    version: src.version,
    pid: process.pid,
    startedAt: src.startedAt.toISOString(),
    uptimeSeconds: Math.round((Date.now() - src.startedAt.getTime()) / 1000),
    listeners: src.addresses,
    volumes: src.exports.map((e) => ({
      name: e.name,
      mode: src.modes.get(e.name) ?? 'raw',
      size: e.device.size,
      readOnly: e.device.caps.readOnly,
      tls: e.tls,
      connections: connections.filter((c) => c.export === e.name).length,
      requests: { ...e.counters.requests },
      bytesRead: e.counters.bytesRead,
      bytesWritten: e.counters.bytesWritten,
      errors: e.counters.errors,
      ...(src.details?.(e.name) ? { details: src.details(e.name)! } : {}),
    })),
    connections,
    ...(src.gateway ? { gateway: src.gateway() } : {}),
    dataPaths: collectDataPaths(src.store),
  };
}
