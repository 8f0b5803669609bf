// One schema per volume shape, shared by every way a volume is described:
//   - rawVolumeSchema / storedVolumeSchema: a `volumes:` entry of the YAML;
//   - cachedVolumeSchema: a `volumes:` entry of mode cached, the admin API's
//     POST /v1/volumes body for a cached volume, and its persisted JSON file;
//   - runtimeVolumeSchema: the admin API's (and control channel's) body for a
//     raw or stored volume created at run time. Its fields ARE the YAML's
//     (same blockSize, size, snapshots, uploadInterval schema objects), so a
//     value refused in the YAML is refused at run time with the same message.
// Paths go through `resolve` (relative → absolute against the config file's
// directory, or dataDir for run-time volumes). TLS defaults depend on the
// top-level tls: section, so the caller fills them in (resolveVolumeTls).
import { join } from 'node:path';
import { z } from 'zod';
import type { TakeoverPolicy } from '../fencing/lease.js';
import type { TlsPolicy } from '../nbd/export.js';
import type { CachedVolumeConfig } from '../volumes/cached/config.js';
import type { RawVolumeConfig, StoredVolumeConfig } from '../daemon/config.js';
import {
  blockSize, DEFAULT_BLOCK_SIZE, defaultedSection, duration, integer, MiB, nullIsAbsent, oneOf, section, size, snapshotId, text, volumeName,
} from './fields.js';

export type Resolve = (path: string) => string;

export const TLS_POLICIES = ['off', 'on', 'require'] as const;
export const VOLUME_MODES = ['raw', 'stored', 'cached'] as const;

/** What a volume's `tls:` may say; undefined = the default (on when a tls: section exists). */
export const tlsPolicy = oneOf(TLS_POLICIES).optional();

/** Volume size in bytes (> 0); absent = take it from the disk, the store or the snapshot. */
export const volumeSize = nullIsAbsent(size(1).optional());

/** A local directory with a size cap ({dir, size}): write logs and chunk caches. */
function dirWithSize(resolve: Resolve, example: string) {
  return z.strictObject({ dir: text.transform((d) => resolve(d)), size: size(MiB) }, {
    error: (iss) => (iss.input === undefined ? `is required ({dir, size}, e.g. {dir: ${example}, size: 8GiB})` : undefined),
  });
}

/** Scheduled snapshots of a stored volume. */
export const snapshotSchedule = nullIsAbsent(section({
  interval: duration(1000),
  keep: integer(1, Number.MAX_SAFE_INTEGER, 'a positive integer').optional(),
}).transform((s) => ({ intervalMs: s.interval, keep: s.keep })).optional());

/** How often an internal snapshot marker is cut (upload cadence). */
export const uploadInterval = duration(1).default(1000);

const description = text.optional();

export function rawVolumeSchema(resolve: Resolve) {
  return section({
    name: volumeName,
    mode: z.literal('raw'),
    size: volumeSize,
    disk: z.string({ error: (iss) => (iss.input === undefined ? 'is required (a file or block device path)' : undefined) }).pipe(text).transform((d) => resolve(d)),
    description,
    tls: tlsPolicy,
    readOnly: z.boolean().default(false),
  }).transform((v) => ({ name: v.name, mode: v.mode, size: v.size, disk: v.disk, readOnly: v.readOnly, description: v.description, tls: v.tls }));
}

export function storedVolumeSchema(resolve: Resolve) {
  return section({
    name: volumeName,
    mode: z.literal('stored'),
    size: volumeSize,
    disk: z.string({ error: (iss) => (iss.input === undefined ? 'is required (a file or block device path)' : undefined) }).pipe(text).transform((d) => resolve(d)),
    description,
    tls: tlsPolicy,
    writeLog: dirWithSize(resolve, '/var/lib/blockgate/log/NAME'),
    blockSize: blockSize.default(DEFAULT_BLOCK_SIZE),
    snapshots: snapshotSchedule,
    restoreFrom: snapshotId.optional(),
    uploadInterval,
  }).transform((v) => ({
    name: v.name, mode: v.mode, size: v.size, disk: v.disk, readOnly: false as const, description: v.description, tls: v.tls,
    writeLog: v.writeLog, blockSize: v.blockSize, snapshots: v.snapshots, restoreFrom: v.restoreFrom, uploadIntervalMs: v.uploadInterval,
  }));
}

export const TAKEOVER_POLICIES = ['never', 'expired', 'force'] as const satisfies readonly TakeoverPolicy[];

export function cachedVolumeSchema(resolve: Resolve) {
  return section({
    name: volumeName,
    mode: z.literal('cached'),
    size: volumeSize,
    description,
    tls: tlsPolicy,
    cache: dirWithSize(resolve, '/var/lib/blockgate/cache/NAME'),
    writeLog: dirWithSize(resolve, '/var/lib/blockgate/log/NAME'),
    /** New volumes only (default 512 KiB); an existing volume keeps its own. */
    blockSize: blockSize.optional(),
    fromSnapshot: snapshotId.optional(),
    uploadInterval,
    readAhead: integer(0, 1024, 'a number of blocks').default(8),
    lease: defaultedSection({
      ttl: duration(1000).default(60_000),
      takeover: oneOf(TAKEOVER_POLICIES).default('expired'),
    }),
  }).transform((v, ctx) => {
    if (v.cache.dir === v.writeLog.dir) ctx.addIssue({ code: 'custom', path: ['cache', 'dir'], message: 'must differ from writeLog.dir' });
    if (v.cache.size < (v.blockSize ?? DEFAULT_BLOCK_SIZE)) ctx.addIssue({ code: 'custom', path: ['cache', 'size'], message: 'must hold at least one block (give it thousands)' });
    return {
      name: v.name, mode: v.mode, size: v.size, readOnly: false as const, description: v.description, tls: v.tls,
      cache: v.cache, writeLog: v.writeLog, blockSize: v.blockSize, fromSnapshot: v.fromSnapshot, uploadIntervalMs: v.uploadInterval,
      readAheadBlocks: v.readAhead, lease: { ttlMs: v.lease.ttl, takeover: v.lease.takeover },
    };
  });
}

/** Replaces an unset volume tls with the default; the caller checks that a non-off policy has a tls: section. */
export function withTls<V extends { tls?: TlsPolicy | undefined }>(v: V, dflt: TlsPolicy): Omit<V, 'tls'> & { tls: TlsPolicy } {
  return { ...v, tls: v.tls ?? dflt };
}

const DEFAULT_RUNTIME_LOG_SIZE = 1024 * MiB;

/**
 * A raw or stored volume created at run time: {name, mode: raw|stored, size?,
 * fromSnapshot?, description?} and, for stored, writeLogSize?, blockSize?,
 * snapshots?, uploadInterval?. Its disk and write log live under
 * dataDir/volumes/NAME/. A stored volume from a snapshot is restored lazily
 * (served at once) and takes the snapshot's size when none is given.
 */
export function runtimeVolumeSchema(dataDir: string, tls: TlsPolicy) {
  const base = (name: string): string => join(dataDir, 'volumes', name);
  const raw = section({
    name: volumeName,
    mode: z.literal('raw'),
    size: size(1),
    fromSnapshot: z.undefined({ error: 'a raw volume cannot be created from a snapshot: use mode stored (lazy restore)' }).optional(),
    description,
  }).transform((v): RawVolumeConfig => ({
    name: v.name, mode: 'raw', size: v.size, disk: join(base(v.name), 'disk.img'), readOnly: false, description: v.description, tls,
  }));
  const stored = section({
    name: volumeName,
    mode: z.literal('stored'),
    size: volumeSize,
    fromSnapshot: nullIsAbsent(snapshotId.optional()),
    description,
    writeLogSize: size(MiB).default(DEFAULT_RUNTIME_LOG_SIZE),
    blockSize: blockSize.default(DEFAULT_BLOCK_SIZE),
    snapshots: snapshotSchedule,
    uploadInterval,
  }).transform((v, ctx): StoredVolumeConfig => {
    if (v.size === undefined && v.fromSnapshot === undefined) ctx.addIssue({ code: 'custom', path: ['size'], message: 'is required (or fromSnapshot)' });
    return {
      name: v.name, mode: 'stored', size: v.size, disk: join(base(v.name), 'disk.img'), readOnly: false, description: v.description, tls,
      writeLog: { dir: join(base(v.name), 'log'), size: v.writeLogSize }, blockSize: v.blockSize, snapshots: v.snapshots,
      restoreFrom: v.fromSnapshot, uploadIntervalMs: v.uploadInterval,
    };
  });
  return z.discriminatedUnion('mode', [raw, stored], {
    error: (iss) => (iss.code === 'invalid_union'
      ? `must be raw, stored or cached (got ${JSON.stringify((iss.input as { mode?: unknown } | undefined)?.mode)})`
      : undefined),
  });
}

export type { CachedVolumeConfig, RawVolumeConfig, StoredVolumeConfig };
