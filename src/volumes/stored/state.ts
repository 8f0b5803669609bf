// Local state of a stored volume, next to its write log: which snapshot root
// the object store holds the volume as of (the parent of the next upload),
// and an unfinished lazy restore. One small JSON file, replaced atomically
// (write tmp, fdatasync, rename, fsync dir), so a crash leaves the old or the
// new state, never a mix.
//
// Invariant: state.root names a root that is durable in the store; its
// markerSeq is the log seq it covers. The log may still hold records <=
// markerSeq (crash before release()); opening releases them.
import { readFileSync } from 'node:fs';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { join } from 'node:path';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';

export interface StoredRootRef {
  /** Snapshot root id (snap-...). */
  readonly id: string;
  /** Log seq the root covers (0 = none: a restored or bootstrapped base). */
  readonly markerSeq: number;
  readonly createdAt: string;
}

export interface StoredRestoreState {
  /** Snapshot the volume is being lazily restored from. */
  readonly snapshot: string;
  readonly startedAt: string;
  readonly totalBlocks: number;
}

export interface StoredVolumeState {
  readonly format: 'blockgate-stored-volume';
  readonly version: 1;
  readonly volume: string;
  readonly size: number;
  readonly blockSize: number;
  readonly root: StoredRootRef | null;
  readonly restore: StoredRestoreState | null;
}

export const STATE_FILE = 'volume.json';

export function readState(dir: string): StoredVolumeState | undefined {
  const path = join(dir, STATE_FILE);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new BlockgateError(ErrorCodes.IO, `cannot read ${path}: ${errorMessage(err)}`, { cause: err });
  }
  let s: StoredVolumeState;
  try {
    s = JSON.parse(text) as StoredVolumeState;
  } catch (err) {
    throw new BlockgateError(ErrorCodes.IO, `${path} is not valid JSON (damaged?): ${errorMessage(err)}`, { cause: err });
  }
  if (s.format !== 'blockgate-stored-volume' || typeof s.blockSize !== 'number') {
    throw new BlockgateError(ErrorCodes.IO, `${path} is not a stored-volume state file`);
  }
  return s;
}

export function writeState(dir: string, state: StoredVolumeState): void {
  writeFileAtomic(join(dir, STATE_FILE), Buffer.from(JSON.stringify(state, null, 2) + '\n'));
}

