// Shared test helpers: seeds (SIM_SEED replays one), temp dirs, a byte model.
import { rmSync } from 'node:fs';
import { tempDir as registeredTempDir } from '../harness/cleanup.js';

/**
 * Seeds for a seeded test: SIM_SEED=<n> runs only that seed; otherwise
 * `count` seeds derived from `base`. A failure names its seed so it can be
 * replayed with SIM_SEED.
 */
export function seeds(base: number, count: number): number[] {
  const fromEnv = process.env.SIM_SEED;
  if (fromEnv !== undefined && fromEnv !== '') return [Number.parseInt(fromEnv, 10)];
  return Array.from({ length: count }, (_, i) => (base * 1000 + i) >>> 0);
}

export async function withSeed<T>(seed: number, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof Error) err.message = `[replay with SIM_SEED=${seed}] ${err.message}`;
    throw err;
  }
}

export function tempDir(prefix: string): { dir: string; cleanup: () => void } {
  const dir = registeredTempDir(`blockgate-${prefix}-`);
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Deterministic bytes for (seed, n): what a record with that identity carries. */
export function pattern(seed: number, n: number, length: number): Buffer {
  const buf = Buffer.allocUnsafe(length);
  let x = (seed * 2654435761 + n * 40503 + 1) >>> 0;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

/**
 * The volume as a byte array plus "written" bits: what the log should say.
 * apply() mirrors append/appendZero.
 */
export class ByteModel {
  readonly bytes: Buffer;
  readonly held: Uint8Array;
  constructor(readonly size: number) {
    this.bytes = Buffer.alloc(size);
    this.held = new Uint8Array(size);
  }
  write(offset: number, data: Buffer): void {
    data.copy(this.bytes, offset);
    this.held.fill(1, offset, offset + data.length);
  }
  zero(offset: number, length: number): void {
    this.bytes.fill(0, offset, offset + length);
    this.held.fill(1, offset, offset + length);
  }
  clone(): ByteModel {
    const m = new ByteModel(this.size);
    this.bytes.copy(m.bytes);
    m.held.set(this.held);
    return m;
  }
}
