// Format codecs and the bounded work pool, without a store.
import { crc32 as zlibCrc32 } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { ErrorCodes, isBlockgateError } from '../../src/errors.js';
import { WorkPool } from '../../src/snapshots/bounded.js';
import { decodePayload, encodePayload } from '../../src/snapshots/codec.js';
import {
  Codec, decodeBlockObject, decodeRoot, decodeShard, encodeBlockObject, encodeRoot, encodeShard, isZero, newSnapshotId,
  sha256, validateBlockSize, SNAPSHOT_ID_RE, type SnapshotRoot,
} from '../../src/snapshots/format.js';
import { settle, until } from '../harness/until.js';
import { prng, textLike } from './images.js';

const code = (fn: () => unknown): string | undefined => {
  try { fn(); } catch (err) { return isBlockgateError(err) ? err.code : String(err); }
  return undefined;
};

describe('snapshot format v1', () => {
  it('shard round trip; any flipped byte is detected', () => {
    const entries = new Map<number, string>([[0, 'a'.repeat(64)], [1023, 'b'.repeat(64)], [5, sha256(Buffer.from('x')).toString('hex')]]);
    const body = encodeShard(1024, entries);
    const hash = sha256(body).toString('hex');
    const back = decodeShard(body, hash, () => 'test');
    expect([...back.entries()].sort((a, b) => a[0] - b[0])).toEqual([...entries.entries()].sort((a, b) => a[0] - b[0]));
    for (const pos of [0, 9, 20, body.length - 1]) {
      const bad = Buffer.from(body); bad[pos]! ^= 1;
      expect(code(() => decodeShard(bad, hash, () => 'test'))).toBe(ErrorCodes.CHECKSUM_MISMATCH);
    }
    // identical content → identical key (shards are shareable)
    expect(sha256(encodeShard(1024, new Map([...entries].reverse()))).toString('hex')).toBe(hash);
  });

  it('root digest detects tampering', () => {
    const root: SnapshotRoot = {
      format: 'blockgate-snapshot', version: 1, id: newSnapshotId(), volume: 'v', parent: null, blockSize: 65536, size: 1, shardBlocks: 1024,
      createdAt: new Date().toISOString(), encryption: null, changedBlocks: 1, aggregateChecksum: 'x', stats: { blocks: 1, newBlocks: 1, uploadedBytes: 1, storedBytes: 1 },
      shards: [{ k: 'c'.repeat(64), n: 1 }],
    };
    const body = encodeRoot(root);
    expect(decodeRoot(body, 'k').id).toBe(root.id);
    const tampered = Buffer.from(body.toString().replace('"size":1', '"size":2'));
    expect(code(() => decodeRoot(tampered, 'k'))).toBe(ErrorCodes.CHECKSUM_MISMATCH);
    expect(code(() => decodeRoot(Buffer.from('{nope'), 'k'))).toBe(ErrorCodes.SNAPSHOT_CORRUPT);
    const future = JSON.parse(body.toString()); future.version = 2;
    expect(code(() => decodeRoot(Buffer.from(JSON.stringify(future)), 'k'))).toBe(ErrorCodes.NOT_SUPPORTED);
  });

  it('block objects: text compresses with lz4, random data is stored raw, CRC catches damage', async () => {
    const text = textLike('t', 512 * 1024);
    const rnd = prng('r', 512 * 1024);
    const t = await encodePayload(text, 'lz4');
    expect(t.codec).toBe(Codec.Lz4);
    expect(t.payload.length).toBeLessThan(text.length / 2);
    const r = await encodePayload(rnd, 'lz4');
    expect(r.codec).toBe(Codec.None);
    for (const [plain, enc] of [[text, t], [rnd, r]] as const) {
      const obj = encodeBlockObject(enc.codec, plain.length, enc.payload);
      expect(obj.length).toBeLessThanOrEqual(plain.length + 16);
      const d = decodeBlockObject(obj, () => 'b');
      expect((await decodePayload(d.codec, d.payload, d.plainLength, () => 'b')).equals(plain)).toBe(true);
      const bad = Buffer.from(obj); bad[100]! ^= 0x10;
      expect(code(() => decodeBlockObject(bad, () => 'b'))).toBe(ErrorCodes.CHECKSUM_MISMATCH);
      expect(code(() => decodeBlockObject(obj.subarray(0, 10), () => 'b'))).toBe(ErrorCodes.CHECKSUM_MISMATCH);
    }
  });

  it('block sizes, ids, zero detection', () => {
    for (const ok of [65536, 524288, 4194304]) expect(code(() => validateBlockSize(ok))).toBeUndefined();
    for (const bad of [0, 32768, 65537, 3 * 65536, 8388608]) expect(code(() => validateBlockSize(bad))).toBe(ErrorCodes.INVALID_ARGUMENT);
    const a = newSnapshotId(1000), b = newSnapshotId(2000);
    expect(a < b).toBe(true);
    expect(SNAPSHOT_ID_RE.test(a)).toBe(true);
    const z = Buffer.alloc(200_000);
    expect(isZero(z)).toBe(true);
    z[199_999] = 1;
    expect(isZero(z)).toBe(false);
    expect(isZero(Buffer.alloc(0))).toBe(true);
  });
});

describe('block object header CRC', () => {
  it('is CRC-32 (IEEE, as zlib computes it) of the payload, so objects written by any version decode', () => {
    for (const n of [0, 1, 4096, 512 * 1024 + 3]) {
      const payload = prng(`crc-${n}`, n);
      const body = encodeBlockObject(Codec.None, payload.length, payload);
      expect(body.readUInt32BE(12)).toBe(zlibCrc32(payload) >>> 0);
      expect(decodeBlockObject(body, () => 'x').payload.equals(payload)).toBe(true);
      body[body.length - 1] = (body[body.length - 1] ?? 0) ^ (n > 0 ? 1 : 0);
      if (n > 0) expect(() => decodeBlockObject(body, () => 'x')).toThrow(/CRC mismatch/);
    }
  });
});

describe('WorkPool', () => {
  it('bounds concurrency and admission (backpressure), and drains', async () => {
    const pool = new WorkPool(3, 2);
    let running = 0, peak = 0, done = 0, admitted = 0;
    const releases: Array<() => void> = [];
    const producer = (async () => {
      for (let i = 0; i < 20; i++) {
        await pool.push(async () => {
          running++; peak = Math.max(peak, running);
          await new Promise<void>((r) => releases.push(r));
          running--; done++;
        });
        admitted++;
      }
    })();
    await until(() => releases.length === 3 && admitted === 5, 5000, '3 tasks running, 2 queued');
    await settle(); // no timers involved: anything the pool would still admit has been admitted by now
    expect(admitted).toBe(5); // 3 running + 2 queued; the producer waits
    while (done < 20) {
      releases.splice(0).forEach((r) => r());
      await until(() => releases.length > 0 || done === 20, 5000, 'the next tasks to start');
    }
    await producer;
    await pool.drain();
    expect(peak).toBe(3);
  });

  it('keeps the first error, stops admitting, and rethrows it from drain', async () => {
    const pool = new WorkPool(2);
    await pool.push(async () => { throw new Error('boom'); });
    await settle(); // the task has failed (promise callbacks only)
    await expect(pool.push(async () => {})).rejects.toThrow('boom');
    await expect(pool.drain()).rejects.toThrow('boom');
  });
});

describe('progress bar', () => {
  it('draws on a TTY with rate and ETA, and never when disabled or not a TTY', async () => {
    const { createProgressBar } = await import('../../src/cli/progress.js');
    const mk = (isTTY: boolean): { out: string[]; stream: NodeJS.WriteStream } => {
      const out: string[] = [];
      return { out, stream: { isTTY, columns: 120, write: (s: string) => { out.push(s); return true; } } as unknown as NodeJS.WriteStream };
    };
    const tty = mk(true);
    const bar = createProgressBar('upload', true, tty.stream);
    bar.update(512 * 1024 * 1024, 1024 * 1024 * 1024);
    bar.done();
    expect(tty.out[0]).toMatch(/upload \[#+\.+\]\s+50% 512 MiB\/1.00 GiB .*\/s ETA \S+/);
    expect(tty.out.at(-1)).toBe('\r\x1b[K');
    const pipe = mk(false);
    createProgressBar('upload', true, pipe.stream).update(1, 2);
    const json = mk(true);
    createProgressBar('upload', false, json.stream).update(1, 2);
    expect(pipe.out).toEqual([]);
    expect(json.out).toEqual([]);
  });
});
