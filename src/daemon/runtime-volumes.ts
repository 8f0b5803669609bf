// Raw and stored volumes created at run time (admin API, control channel, or
// a restore): their normalised configuration is kept as one JSON file each
// under dataDir/runtime-volumes/ and reopened at every start; their data lives
// under dataDir/volumes/<name>/. (Cached run-time volumes are persisted by the
// cached runtime itself, under dataDir/volumes/<name>.json.)
// Invariant: a file is written (atomically: temp + fsync + rename) only after
// the volume opened successfully, so a restart never finds a volume that
// could not be created.
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { writeFileAtomic } from '../util/atomic-file.js';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { TlsPolicy } from '../nbd/export.js';
import { parseWith } from '../config/fields.js';
import { rawVolumeSchema, runtimeVolumeSchema, storedVolumeSchema, withTls } from '../config/volumes.js';
import { formatDuration } from '../util/duration.js';
import type { RawVolumeConfig, StoredVolumeConfig } from './config.js';

export type RuntimeVolumeConfig = RawVolumeConfig | StoredVolumeConfig;

/**
 * A raw or stored volume's config from a request body (admin API, control
 * channel, restores): config/volumes.ts runtimeVolumeSchema, whose fields are
 * the YAML's. Errors are INVALID_ARGUMENT naming the key ("volume.blockSize: ...").
 */
export function runtimeVolumeConfig(body: Record<string, unknown>, dataDir: string, tls: TlsPolicy): RuntimeVolumeConfig {
  return parseWith(runtimeVolumeSchema(dataDir, tls), body, { code: ErrorCodes.INVALID_ARGUMENT, prefix: 'volume' });
}

function dir(dataDir: string): string {
  return join(dataDir, 'runtime-volumes');
}

export function saveRuntimeVolume(dataDir: string, cfg: RuntimeVolumeConfig): void {
  const d = dir(dataDir);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(d, `${cfg.name}.json`), JSON.stringify(cfg, null, 2) + '\n');
}

/**
 * A persisted file as a `volumes:` entry of the YAML (durations written back
 * in the common grammar), so a reloaded volume passes the YAML's schema too.
 */
function asConfigEntry(saved: Record<string, unknown>): Record<string, unknown> {
  if (saved.mode !== 'stored') return saved;
  const { readOnly: _readOnly, uploadIntervalMs, snapshots, ...rest } = saved;
  const sn = snapshots as { intervalMs?: unknown; keep?: unknown } | undefined;
  return {
    ...rest,
    ...(typeof uploadIntervalMs === 'number' ? { uploadInterval: formatDuration(uploadIntervalMs) } : {}),
    ...(sn ? { snapshots: { interval: typeof sn.intervalMs === 'number' ? formatDuration(sn.intervalMs) : sn.intervalMs, ...(sn.keep !== undefined ? { keep: sn.keep } : {}) } } : {}),
  };
}

export function loadRuntimeVolumes(dataDir: string): RuntimeVolumeConfig[] {
  const d = dir(dataDir);
  if (!existsSync(d)) return [];
  const schema = z.discriminatedUnion('mode', [rawVolumeSchema((p) => resolve(dataDir, p)), storedVolumeSchema((p) => resolve(dataDir, p))], {
    error: (iss) => (iss.code === 'invalid_union' ? 'must be raw or stored' : undefined),
  });
  return readdirSync(d).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const path = join(d, f);
    try {
      const saved: unknown = JSON.parse(readFileSync(path, 'utf8'));
      const entry = saved !== null && typeof saved === 'object' && !Array.isArray(saved) ? asConfigEntry(saved as Record<string, unknown>) : saved;
      return withTls(parseWith(schema, entry, { code: ErrorCodes.CONFIG }), 'off') as RuntimeVolumeConfig;
    } catch (err) {
      throw new BlockgateError(ErrorCodes.CONFIG, `run-time volume file ${path} is invalid: ${errorMessage(err)}`);
    }
  });
}
