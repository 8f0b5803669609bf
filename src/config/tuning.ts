// The `tuning:` section: knobs that change production data paths (docs/tuning.md).
// It is validated with the rest of the daemon config, and `blockgate serve`
// makes it the process-wide setting once, before any volume or store opens
// (applyTuning); the data paths read it through tuning(). Anything that never
// runs `serve` (the CLI's snapshot commands, tests) sees the defaults.
// Environment variables no longer change production behaviour; the few that
// remain (BLOCKGATE_NATIVE_ADDON, BLOCKGATE_NATIVE_SHA256, BLOCKGATE_NATIVE_CRC)
// are documented as test/benchmark-only.
import { z } from 'zod';
import { defaultedSection, KiB, MiB, size } from './fields.js';

export interface Tuning {
  /**
   * Reads and writes up to this many bytes first try preadv2/pwritev2
   * (RWF_NOWAIT) on the event loop: a page-cache hit skips the thread pool.
   * Raw volumes and chunk caches; 0 turns the fast path off.
   */
  readonly nowaitMax: number;
  /**
   * S3 GET/PUT/HEAD as plain signed HTTP requests (object-store/s3-direct.ts)
   * instead of through the AWS SDK's middleware, when the store has a custom
   * endpoint (AWS itself always goes through the SDK).
   */
  readonly s3DirectRequests: boolean;
}

export const DEFAULT_TUNING: Tuning = { nowaitMax: 64 * KiB, s3DirectRequests: true };

/** Upper bound of nowaitMax: a synchronous copy on the event loop must stay short. */
export const NOWAIT_MAX_LIMIT = 1 * MiB;

export const tuningSchema = defaultedSection({
  nowaitMax: size().refine((n) => n <= NOWAIT_MAX_LIMIT, { error: `must be at most 1 MiB (0 = off): a larger copy would hold the event loop` })
    .default(DEFAULT_TUNING.nowaitMax),
  s3DirectRequests: z.boolean().default(DEFAULT_TUNING.s3DirectRequests),
});

let active: Tuning = DEFAULT_TUNING;

/** Makes `t` the setting of this process (called by the daemon before it opens anything). */
export function applyTuning(t: Tuning): void {
  active = { ...t };
}

/** The setting in force (the defaults unless a daemon applied its config's). */
export function tuning(): Tuning {
  return active;
}
