// Block compression: LZ4 (lz4-napi, block format with prepended size), chosen
// by measurement (docs/formats/snapshot.md#compression). Stateless.
// Invariants: encode() never returns a payload larger than the plaintext
// (incompressible data is stored raw, Codec.None); a cheap probe of eight 4 KiB
// samples skips the full compression attempt on random/encrypted data;
// decode() returns exactly `plainLength` bytes or throws CHECKSUM_MISMATCH.

import { compress, uncompress, compressSync } from 'lz4-napi';
import { Codec, checksumError } from './format.js';

export type CompressionMode = 'lz4' | 'none';

const PROBE_SAMPLES = 8;
const PROBE_BYTES = 4096;
/** Keep compressed output only when it saves at least this fraction. */
const MIN_SAVING = 1 / 16;

function probablyCompressible(plain: Buffer): boolean {
  if (plain.length <= PROBE_SAMPLES * PROBE_BYTES * 2) return true;
  const step = Math.floor(plain.length / PROBE_SAMPLES);
  const sample = Buffer.allocUnsafe(PROBE_SAMPLES * PROBE_BYTES);
  for (let i = 0; i < PROBE_SAMPLES; i++) plain.copy(sample, i * PROBE_BYTES, i * step, i * step + PROBE_BYTES);
  return compressSync(sample).length < sample.length * (1 - MIN_SAVING);
}

export async function encodePayload(plain: Buffer, mode: CompressionMode): Promise<{ codec: Codec; payload: Buffer }> {
  if (mode === 'none' || !probablyCompressible(plain)) return { codec: Codec.None, payload: plain };
  const packed = await compress(plain);
  if (packed.length > plain.length * (1 - MIN_SAVING)) return { codec: Codec.None, payload: plain };
  return { codec: Codec.Lz4, payload: packed };
}

export async function decodePayload(codec: Codec, payload: Buffer, plainLength: number, where: () => string): Promise<Buffer> {
  if (codec === Codec.None) return payload;
  let out: Buffer;
  try {
    out = await uncompress(payload);
  } catch (err) {
    throw checksumError(`${where()}: LZ4 payload does not decode (${(err as Error).message})`);
  }
  if (out.length !== plainLength) throw checksumError(`${where()}: decoded length ${out.length} != ${plainLength}`);
  return out;
}
