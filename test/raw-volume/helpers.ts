// Helpers shared by the raw-volume tests (the plain-file unit tier in
// test/unit/raw-volume.test.ts and the root-only tmpfs/loop-device file beside this one).
import { stat } from 'node:fs/promises';
import { expect, onTestFinished } from 'vitest';
import { isBlockgateError } from '../../src/errors.js';
import { RawVolume, type RawVolumeOptions } from '../../src/volumes/raw.js';

/** Opens a raw volume that is closed when the current test finishes. */
export async function openVol(opts: RawVolumeOptions): Promise<RawVolume> {
  const v = await RawVolume.open(opts);
  onTestFinished(() => v.close().catch(() => undefined));
  return v;
}

/** Allocated bytes of a file (du). */
export async function allocated(path: string): Promise<number> {
  return (await stat(path)).blocks * 512;
}

export function fill(len: number, byte: number): Buffer {
  return Buffer.alloc(len, byte);
}

/** `p` rejects with an ERR_CONFIG whose message matches `re`. */
export async function expectConfigError(p: Promise<unknown>, re: RegExp): Promise<void> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(isBlockgateError(err, 'ERR_CONFIG'), String(err)).toBe(true);
  expect((err as Error).message).toMatch(re);
}
