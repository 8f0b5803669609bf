// What a cached volume keeps outside its data: the volume record in the
// object store (inside its lease object, so that every change of the live
// root is a conditional put under the writer's epoch) and a small local state
// file next to its write log (the log's identity).
//
// Invariant: record.root names a snapshot root that is durable in the store
// (put before the record points at it). root.log/markerSeq say which write
// log (by id) the root covers up to which seq: a log with that id may still
// hold records <= markerSeq (crash between the record put and release());
// opening releases them. Any other log's unreleased records were written
// under an epoch that never committed them.
import { randomBytes } from 'node:crypto';
import { writeFileAtomic } from '../../util/atomic-file.js';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';

export interface LiveRootRef {
  /** Snapshot root id (snap-...). */
  readonly id: string;
  /** Seq (in write log `log`) that the root covers; 0 when it covers no record of any log. */
  readonly markerSeq: number;
  /** Id of the write log whose records up to markerSeq the root holds (null: none). */
  readonly log: string | null;
  readonly createdAt: string;
}

/** The `data` of a cached volume's lease object (`cached-volumes/<name>.json`). */
export interface CachedVolumeRecord {
  readonly volume: string;
  /** Snapshot family (volume name in roots): the volume's own name, or its origin's family for a clone. */
  readonly family: string;
  readonly size: number;
  readonly blockSize: number;
  /** Snapshot the volume was created from (null: created empty). */
  readonly origin: string | null;
  readonly createdAt: string;
  readonly root: LiveRootRef | null;
}

export const recordKey = (volume: string): string => `cached-volumes/${volume}.json`;

export interface LocalState {
  readonly format: 'blockgate-cached-volume';
  readonly version: 1;
  readonly volume: string;
  /** Identity of the write log in this directory. */
  readonly logId: string;
  readonly createdAt: string;
}

const STATE_FILE = 'cached-volume.json';

/** Reads the local state in `dir`, creating it (new log id) when absent. */
export function loadLocalState(dir: string, volume: string): LocalState {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, STATE_FILE);
  let text: string | undefined;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BlockgateError(ErrorCodes.IO, `cannot read ${path}: ${errorMessage(err)}`);
  }
  if (text !== undefined) {
    let s: LocalState;
    try { s = JSON.parse(text) as LocalState; } catch (err) {
      throw new BlockgateError(ErrorCodes.IO, `${path} is not valid JSON (damaged?): ${errorMessage(err)}`);
    }
    if (s.format !== 'blockgate-cached-volume' || typeof s.logId !== 'string') throw new BlockgateError(ErrorCodes.CONFIG, `${path} is not a cached-volume state file`);
    if (s.volume !== volume) throw new BlockgateError(ErrorCodes.CONFIG, `${dir} holds the write log of volume ${s.volume}, not ${volume}`);
    return s;
  }
  const s: LocalState = { format: 'blockgate-cached-volume', version: 1, volume, logId: `log-${randomBytes(8).toString('hex')}`, createdAt: new Date().toISOString() };
  writeFileAtomic(path, Buffer.from(JSON.stringify(s, null, 2) + '\n'));
  return s;
}

