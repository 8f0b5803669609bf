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
import { join } from 'node:path';
import { BlockgateError, ErrorCodes, errorMessage } from '../errors.js';
import type { TlsPolicy } from '../nbd/export.js';
import { parseSize } from '../util/size.js';
import type { RawVolumeConfig, StoredVolumeConfig } from './config.js';

export type RuntimeVolumeConfig = RawVolumeConfig | StoredVolumeConfig;

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const DEFAULT_LOG_SIZE = 1024 ** 3;
const DEFAULT_BLOCK_SIZE = 512 * 1024;

function bad(message: string): never {
  throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, message);
}

/**
 * A raw or stored volume's config from a request body
 * {name, mode: raw|stored, size?, fromSnapshot?, writeLogSize?, blockSize?, description?}.
 * A stored volume from a snapshot is restored lazily (served at once) and takes the snapshot's size when none is given.
 */
export function runtimeVolumeConfig(body: Record<string, unknown>, dataDir: string, tls: TlsPolicy): RuntimeVolumeConfig {
  const name = body.name;
  if (typeof name !== 'string' || !NAME.test(name)) bad(`name must be 1-128 letters, digits, '.', '_' or '-' (got ${JSON.stringify(name)})`);
  const mode = body.mode;
  if (mode !== 'raw' && mode !== 'stored') bad(`mode must be raw, stored or cached (got ${JSON.stringify(mode)})`);
  const size = body.size === undefined || body.size === null ? undefined : parseSize(body.size as string | number);
  if (size === undefined && body.size !== undefined && body.size !== null) bad(`size ${JSON.stringify(body.size)} is not a size`);
  if (size !== undefined && size <= 0) bad('size must be positive');
  const fromSnapshot = body.fromSnapshot ?? undefined;
  if (fromSnapshot !== undefined && (typeof fromSnapshot !== 'string' || !/^v?snap-[0-9a-f]+$/.test(fromSnapshot))) {
    bad(`fromSnapshot must be a snapshot id (vsnap-... or snap-...), got ${JSON.stringify(fromSnapshot)}`);
  }
  const description = typeof body.description === 'string' ? body.description : undefined;
  const base = join(dataDir, 'volumes', name);
  if (mode === 'raw') {
    if (fromSnapshot !== undefined) bad('a raw volume cannot be created from a snapshot: use mode stored (lazy restore)');
    if (size === undefined) bad('size is required');
    return { name, mode: 'raw', size, disk: join(base, 'disk.img'), readOnly: false, description, tls };
  }
  if (size === undefined && fromSnapshot === undefined) bad('size is required (or fromSnapshot)');
  const logSize = body.writeLogSize === undefined ? DEFAULT_LOG_SIZE : parseSize(body.writeLogSize as string | number);
  const blockSize = body.blockSize === undefined ? DEFAULT_BLOCK_SIZE : parseSize(body.blockSize as string | number);
  if (logSize === undefined || logSize <= 0) bad(`writeLogSize ${JSON.stringify(body.writeLogSize)} is not a size`);
  if (blockSize === undefined) bad(`blockSize ${JSON.stringify(body.blockSize)} is not a size`);
  return {
    name, mode: 'stored', size, disk: join(base, 'disk.img'), readOnly: false, description, tls,
    writeLog: { dir: join(base, 'log'), size: logSize }, blockSize, snapshots: undefined,
    restoreFrom: fromSnapshot, uploadIntervalMs: 1000,
  };
}

function dir(dataDir: string): string {
  return join(dataDir, 'runtime-volumes');
}

export function saveRuntimeVolume(dataDir: string, cfg: RuntimeVolumeConfig): void {
  const d = dir(dataDir);
  mkdirSync(d, { recursive: true, mode: 0o700 });
  writeFileAtomic(join(d, `${cfg.name}.json`), JSON.stringify(cfg, null, 2) + '\n');
}

export function loadRuntimeVolumes(dataDir: string): RuntimeVolumeConfig[] {
  const d = dir(dataDir);
  if (!existsSync(d)) return [];
  return readdirSync(d).filter((f) => f.endsWith('.json')).sort().map((f) => {
    const path = join(d, f);
    try {
      const cfg = JSON.parse(readFileSync(path, 'utf8')) as RuntimeVolumeConfig;
      if ((cfg.mode !== 'raw' && cfg.mode !== 'stored') || typeof cfg.name !== 'string' || typeof cfg.disk !== 'string') throw new Error('not a raw or stored volume');
      return cfg;
    } catch (err) {
      throw new BlockgateError(ErrorCodes.CONFIG, `run-time volume file ${path} is invalid: ${errorMessage(err)}`);
    }
  });
}
