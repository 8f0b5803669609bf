// WriteLog behaviour: replay, group commit, backpressure, index vs model,
// marker pre-images, release, errors. Seeded tests replay with SIM_SEED.
import { afterEach, describe, expect, it } from 'vitest';
import { isBlockgateError, ErrorCodes } from '../../src/errors.js';
import { nodeLogIo, type LogIo } from '../../src/write-log/io.js';
import { SEGMENT_HEADER_BYTES, recordBytes } from '../../src/write-log/format.js';
import { WriteLog, type LogRecord } from '../../src/write-log/write-log.js';
import { ByteModel, pattern, seeds, tempDir, withSeed } from './helpers.js';
import { SimDisk, randInt, rng32 } from './sim-disk.js';

const VOL = '6ba7b810-9dad-11d1-80b4-00c04fd430c8';
const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function tmp(): string {
  const t = tempDir('wlog');
  cleanups.push(t.cleanup);
  return t.dir;
}

async function openLog(dir: string, opts: Partial<Parameters<typeof WriteLog.open>[1]> = {}): Promise<WriteLog> {
  const wl = await WriteLog.open(dir, { capacityBytes: 64 << 20, volumeId: VOL, segmentBytes: 256 << 10, ...opts });
  cleanups.push(() => wl.close());
  return wl;
}

async function collect(wl: WriteLog, from?: number): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  for await (const r of wl.pendingRecords(from, { withData: true })) out.push(r);
  return out;
}

/** Overlay of the log on `base` (a copy), for [0, size). */
async function readAll(wl: WriteLog, size: number, base: Buffer, asOf?: number): Promise<Buffer> {
  const out = Buffer.from(base);
  await wl.readDirty(0, size, out, asOf === undefined ? {} : { asOf });
  return out;
}

function expectCode(err: unknown, code: string): void {
  expect(isBlockgateError(err)).toBe(true);
  expect((err as { code: string }).code).toBe(code);
}

/**
 * LogIo over the real file system that counts fdatasyncs; each can be
 * delayed, or held until the test opens the gate.
 */
function countingIo(delayMs = 0): { io: LogIo; fdatasyncs: () => number; hold: () => void; open: () => void } {
  let n = 0;
  let gate: Promise<void> | undefined;
  let openGate: (() => void) | undefined;
  const io: LogIo = {
    ...nodeLogIo,
    async open(path, mode) {
      const f = await nodeLogIo.open(path, mode);
      return Object.assign(Object.create(Object.getPrototypeOf(f) as object) as typeof f, f, {
        async datasync() {
          n++;
          if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
          if (gate) await gate;
          return f.datasync();
        },
      });
    },
  };
  return {
    io,
    fdatasyncs: () => n,
    hold: () => { gate = new Promise((r) => (openGate = r)); },
    open: () => { gate = undefined; openGate?.(); },
  };
}

describe('replay after clean close', () => {
  it('restores records, index, markers and seqs across many segments', async () => {
    const dir = tmp();
    const size = 4 << 20;
    const model = new ByteModel(size);
    let wl = await WriteLog.open(dir, { capacityBytes: 64 << 20, volumeId: VOL, segmentBytes: 128 << 10 });
    const rng = rng32(7);
    let markerSeq = 0;
    for (let i = 0; i < 300; i++) {
      const len = randInt(rng, 1, 20000);
      const off = randInt(rng, 0, size - len);
      if (rng() < 0.15) {
        await wl.appendZero(off, len, { trim: rng() < 0.5 });
        model.zero(off, len);
      } else {
        const data = pattern(7, i, len);
        await wl.append(off, data);
        model.write(off, data);
      }
      if (i === 150) markerSeq = await wl.appendMarker({ snapshot: 'snap-1', n: i });
    }
    const before = wl.usage();
    expect(before.segments).toBeGreaterThan(10);
    await wl.close();

    wl = await openLog(dir);
    const after = wl.usage();
    expect(after).toMatchObject({ newestSeq: before.newestSeq, durableSeq: before.newestSeq, records: 301, usedBytes: before.usedBytes, markers: 1 });
    expect(wl.markers()).toEqual([{ seq: markerSeq, payload: { snapshot: 'snap-1', n: 150 } }]);
    expect((await readAll(wl, size, Buffer.alloc(size))).equals(model.bytes)).toBe(true);
    const recs = await collect(wl);
    expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: 301 }, (_, i) => i + 1));
    expect(recs.find((r) => r.type === 'marker')?.payload).toEqual({ snapshot: 'snap-1', n: 150 });
    // Appends continue the sequence.
    expect(await wl.append(0, Buffer.alloc(10, 1))).toBe(302);
  });

  it('refuses another volume\'s log and a second opener', async () => {
    const dir = tmp();
    const wl = await openLog(dir);
    await wl.append(0, Buffer.alloc(512, 1));
    await expect(WriteLog.open(dir, { capacityBytes: 1 << 20, volumeId: VOL })).rejects.toThrow(/already open/);
    await wl.close();
    const err = await WriteLog.open(dir, { capacityBytes: 1 << 20, volumeId: 'other-volume' }).catch((e: unknown) => e);
    expectCode(err, ErrorCodes.INVALID_ARGUMENT);
    expect(String(err)).toMatch(/another volume/);
  });
});

describe('group commit', () => {
  it('N concurrent sync() calls share far fewer fdatasyncs than N', async () => {
    const dir = tmp();
    const { io, fdatasyncs } = countingIo(5);
    const wl = await openLog(dir, { io });
    const base = fdatasyncs();
    const N = 64;
    const seqs = await Promise.all(Array.from({ length: N }, async (_, i) => {
      const seq = await wl.append(i * 4096, pattern(1, i, 4096));
      await wl.sync();
      expect(wl.durableSeq).toBeGreaterThanOrEqual(seq);
      return seq;
    }));
    const used = fdatasyncs() - base;
    expect(used).toBeGreaterThanOrEqual(1);
    expect(used).toBeLessThanOrEqual(4);
    expect(wl.durableSeq).toBe(Math.max(...seqs));
    expect(wl.stats().syncCalls).toBe(N);
  });

  it('a sync arriving while one runs waits for the next round, which covers every joiner', async () => {
    const dir = tmp();
    const gate = countingIo();
    const { io, fdatasyncs } = gate;
    const wl = await openLog(dir, { io });
    const s1 = await wl.append(0, Buffer.alloc(4096, 1)); // creates the segment (its header is synced)
    const base = fdatasyncs();
    gate.hold();
    const first = wl.sync();
    while (fdatasyncs() === base) await new Promise((r) => setImmediate(r)); // first round's fdatasync is running (held)
    const later = await Promise.all([wl.append(4096, Buffer.alloc(4096, 2)), wl.append(8192, Buffer.alloc(4096, 3))]);
    const joiners = Promise.all([wl.sync(), wl.sync(), wl.sync()]);
    gate.open();
    expect(await first).toBeGreaterThanOrEqual(s1);
    expect(await first).toBeLessThan(later[0]!); // it could not cover writes that came after it started
    const results = await joiners;
    for (const r of results) expect(r).toBeGreaterThanOrEqual(later[1]!);
    expect(fdatasyncs() - base).toBe(2);
    // Nothing new: sync is free.
    await wl.sync();
    expect(fdatasyncs() - base).toBe(2);
  });
});

describe('backpressure', () => {
  it('a full log blocks append until release frees a segment; oversized writes are refused', async () => {
    const disk = new SimDisk();
    const seg = 64 << 10;
    const wl = await WriteLog.open('/log', { capacityBytes: 4 * seg, segmentBytes: seg, volumeId: VOL, io: disk });
    cleanups.push(() => wl.close());
    const rec = 16 << 10;
    let last = 0;
    while (wl.usage().usedBytes + recordBytes(rec) <= 4 * seg) last = await wl.append(last * rec % (1 << 20), Buffer.alloc(rec, last & 0xff));
    const full = wl.usage();
    expect(full.usedBytes).toBeLessThanOrEqual(4 * seg);
    let resolved = false;
    const blocked = wl.append(0, Buffer.alloc(rec, 0xab)).then((s) => { resolved = true; return s; });
    const blocked2 = wl.appendZero(0, 100).then((s) => s);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    expect(wl.usage().waitingWriters).toBe(2);
    // A marker is never held back (the uploader must be able to cut a snapshot of a full log).
    const m = await wl.appendMarker({ snapshot: 'drain' });
    expect(m).toBe(last + 1);
    // Releasing only part of a segment frees nothing.
    await wl.release(1);
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
    expect(resolved).toBe(false);
    await wl.release(m);
    expect(await blocked).toBe(m + 1);
    expect(await blocked2).toBe(m + 2);
    expect(wl.usage().waitingWriters).toBe(0);
    expect(wl.stats().segmentsDeleted).toBeGreaterThan(0);
    // Larger than the whole log: refused at once, never waits.
    expect(() => wl.append(0, Buffer.alloc(4 * seg))).toThrow(/never fit/);
    try { wl.append(0, Buffer.alloc(4 * seg)); } catch (e) { expectCode(e, ErrorCodes.INVALID_ARGUMENT); }
  });

  it('close() refuses waiting writers with SHUTTING_DOWN', async () => {
    const disk = new SimDisk();
    const wl = await WriteLog.open('/log', { capacityBytes: 16 << 10, segmentBytes: 8 << 10, volumeId: VOL, io: disk });
    while (wl.usage().usedBytes + recordBytes(4000) <= 16 << 10) await wl.append(0, Buffer.alloc(4000, 1));
    const blocked = wl.append(0, Buffer.alloc(4000, 2)).catch((e: unknown) => e);
    await wl.close();
    expectCode(await blocked, ErrorCodes.SHUTTING_DOWN);
    expect(() => wl.append(0, Buffer.alloc(1))).toThrow(/closed/);
  });
});

describe('index correctness vs a byte model', () => {
  it('random overlapping writes/zeros: readDirty and lookup match, before and after reopen', async () => {
    for (const seed of seeds(21, 6)) {
      await withSeed(seed, async () => {
        const rng = rng32(seed);
        const disk = new SimDisk();
        const size = 3 << 20;
        const model = new ByteModel(size);
        let wl = await WriteLog.open('/v', { capacityBytes: 64 << 20, segmentBytes: 96 << 10, volumeId: VOL, io: disk });
        // Concurrent batches: appends issued together get seqs in call order.
        for (let round = 0; round < 40; round++) {
          const ops: Array<Promise<number>> = [];
          for (let k = randInt(rng, 1, 8); k > 0; k--) {
            const len = rng() < 0.1 ? randInt(rng, 1, 1 << 20) : randInt(rng, 1, 12000);
            const off = randInt(rng, 0, size - len);
            if (rng() < 0.2) {
              ops.push(wl.appendZero(off, len));
              model.zero(off, len);
            } else {
              const data = pattern(seed, round * 10 + k, len);
              ops.push(wl.append(off, data));
              model.write(off, data);
            }
          }
          await Promise.all(ops);
          if (rng() < 0.2) await wl.sync();
          if (round % 10 === 9) {
            const garbage = Buffer.alloc(size, 0xee);
            const got = await readAll(wl, size, garbage);
            const want = Buffer.from(garbage);
            for (let i = 0; i < size; i++) if (model.held[i]) want[i] = model.bytes[i]!;
            expect(got.equals(want)).toBe(true);
            // Random sub-range reads, and lookup agrees with held bytes.
            for (let q = 0; q < 10; q++) {
              const len = randInt(rng, 1, 300000);
              const off = randInt(rng, 0, size - len);
              const buf = Buffer.alloc(len, 0xee);
              const pieces = await wl.readDirty(off, len, buf);
              expect(buf.equals(want.subarray(off, off + len))).toBe(true);
              let heldBytes = 0;
              for (let i = off; i < off + len; i++) heldBytes += model.held[i]!;
              expect(pieces.reduce((a, p) => a + p.length, 0)).toBe(heldBytes);
            }
          }
        }
        await wl.close();
        wl = await WriteLog.open('/v', { capacityBytes: 64 << 20, segmentBytes: 96 << 10, volumeId: VOL, io: disk });
        expect((await readAll(wl, size, Buffer.alloc(size))).equals(model.bytes)).toBe(true);
        await wl.close();
      });
    }
  });
});

describe('snapshot markers: pre-images and release', () => {
  it('block content as of a marker keeps the pre-image; release reclaims space', async () => {
    const dir = tmp();
    const bs = 64 << 10;
    const wl = await openLog(dir, { segmentBytes: 128 << 10 });
    const A = pattern(1, 1, bs);
    const B = pattern(2, 2, bs);
    const C = pattern(3, 3, 4096);
    await wl.append(5 * bs, A);
    await wl.append(9 * bs + 100, C);
    const m = await wl.appendMarker({ snapshot: 'snap-a' });
    await wl.append(5 * bs, B);
    await wl.appendZero(9 * bs, bs);
    await wl.append(12 * bs, C);
    const m2 = await wl.appendMarker({ snapshot: 'snap-b' });
    await wl.append(5 * bs + 10, C);

    const block = Buffer.alloc(bs);
    await wl.readBlock(5, bs, block, { asOf: m });
    expect(block.equals(A)).toBe(true);
    await wl.readBlock(5, bs, block);
    const nowB = Buffer.from(B); C.copy(nowB, 10);
    expect(block.equals(nowB)).toBe(true);
    await wl.readBlock(5, bs, block, { asOf: m2 });
    expect(block.equals(B)).toBe(true);

    // Changed blocks for each snapshot, with coverage.
    expect(wl.changedBlocks(bs, { asOf: m }).map((b) => [b.index, b.covered])).toEqual([[5, true], [9, false]]);
    expect(wl.changedBlocks(bs, { asOf: m2 }).map((b) => [b.index, b.covered])).toEqual([[5, true], [9, true], [12, false]]);
    const b9 = Buffer.alloc(bs, 0x77);
    await wl.readBlock(9, bs, b9, { asOf: m });
    expect(b9.subarray(100, 4196).equals(C)).toBe(true);
    expect(b9[0]).toBe(0x77); // not held: the base's bytes stay
    await wl.readBlock(9, bs, b9, { asOf: m2 });
    expect(b9.equals(Buffer.alloc(bs))).toBe(true);

    // Fill more segments so release has whole segments to delete.
    for (let i = 0; i < 8; i++) await wl.append(20 * bs + i * bs, pattern(9, i, bs));
    const before = wl.usage();
    await wl.release(m); // snapshot a is in the object store
    const after = wl.usage();
    expect(after.usedBytes).toBeLessThan(before.usedBytes);
    expect(after.releasedSeq).toBe(m);
    expect(wl.markers().map((x) => x.seq)).toEqual([m2]);
    expect(() => wl.changedBlocks(bs, { asOf: m })).toThrow(/released/);
    // Snapshot b is still exact; block 5 as of b is B, now is B+C.
    await wl.readBlock(5, bs, block, { asOf: m2 });
    expect(block.equals(B)).toBe(true);
    expect(wl.changedBlocks(bs, { asOf: m2 }).map((b) => b.index)).toEqual([5, 9, 12]);

    const beforeAll = wl.usage();
    await wl.release(wl.newestSeq);
    const empty = wl.usage();
    expect(empty.usedBytes).toBeLessThan(beforeAll.usedBytes);
    expect(empty.usedBytes).toBe(0);
    expect(empty.records).toBe(0);
    expect(wl.lookup(0, 100 * bs)).toEqual([]);
    // Seqs keep growing after everything is gone, also across reopen.
    const next = await wl.append(0, Buffer.alloc(8, 1));
    expect(next).toBe(empty.newestSeq + 1);
    await wl.close();
    const again = await openLog(dir);
    expect(again.usage()).toMatchObject({ releasedSeq: empty.newestSeq, newestSeq: next, records: 1 });
    expect(again.usage().usedBytes).toBe(SEGMENT_HEADER_BYTES + recordBytes(8));
  });

  it('release persists: released records do not come back after a restart', async () => {
    const dir = tmp();
    let wl = await WriteLog.open(dir, { capacityBytes: 64 << 20, volumeId: VOL, segmentBytes: 8192 });
    for (let i = 0; i < 10; i++) await wl.append(i * 4096, Buffer.alloc(4096, i + 1));
    const m = await wl.appendMarker({ s: 1 });
    await wl.append(0, Buffer.alloc(4096, 0xff));
    await wl.release(m);
    await wl.close();
    wl = await openLog(dir);
    expect(wl.markers()).toEqual([]);
    expect((await collect(wl)).map((r) => r.seq)).toEqual([m + 1]);
    expect(wl.lookup(0, 40960).map((p) => [p.offset, p.length, p.seq])).toEqual([[0, 4096, m + 1]]);
  });
});

describe('errors', () => {
  it('validates arguments', async () => {
    const wl = await openLog(tmp());
    for (const f of [
      () => wl.append(-1, Buffer.alloc(1)),
      () => wl.append(0, Buffer.alloc(0)),
      () => wl.appendZero(0, 0),
      () => wl.appendZero(1.5, 10),
      () => wl.appendMarker({ big: 'x'.repeat(70000) }),
      () => wl.appendMarker({ n: 1n }),
      () => wl.lookup(0, 10, { asOf: 12345 }),
      () => wl.changedBlocks(0),
    ]) {
      let err: unknown;
      try { await f(); } catch (e) { err = e; }
      expectCode(err, ErrorCodes.INVALID_ARGUMENT);
    }
    await expect(wl.release(99)).rejects.toThrow(/past the newest/);
    await expect(WriteLog.open(tmp(), { capacityBytes: 100, volumeId: VOL })).rejects.toThrow(/capacityBytes/);
  });

  it('a failed fdatasync poisons the log (IO), and reopening recovers what was written', async () => {
    const disk = new SimDisk();
    const wl = await WriteLog.open('/p', { capacityBytes: 1 << 20, segmentBytes: 64 << 10, volumeId: VOL, io: disk });
    const s1 = await wl.append(0, Buffer.alloc(100, 1));
    await wl.sync();
    await wl.append(100, Buffer.alloc(100, 2));
    disk.failNext('datasync');
    expectCode(await wl.sync().catch((e: unknown) => e), ErrorCodes.IO);
    expect(() => wl.append(0, Buffer.alloc(1))).toThrow(/fdatasync/);
    expectCode(await wl.sync().catch((e: unknown) => e), ErrorCodes.IO);
    await wl.close();
    const re = await WriteLog.open('/p', { capacityBytes: 1 << 20, segmentBytes: 64 << 10, volumeId: VOL, io: disk });
    expect(re.newestSeq).toBeGreaterThanOrEqual(s1);
    await re.close();
  });

  it('damage inside a sealed (synced) segment is CHECKSUM_MISMATCH, not skipped', async () => {
    const disk = new SimDisk();
    const opts = { capacityBytes: 1 << 20, segmentBytes: 8192, volumeId: VOL, io: disk };
    const wl = await WriteLog.open('/c', opts);
    for (let i = 0; i < 20; i++) await wl.append(i * 1000, Buffer.alloc(1000, i + 1));
    await wl.close();
    const names = disk.fileNames('/c').filter((n) => n.startsWith('seg-')).sort();
    expect(names.length).toBeGreaterThan(2);
    const path = `/c/${names[0]}`;
    const bytes = Buffer.from(disk.bytes(path));
    bytes[SEGMENT_HEADER_BYTES + 48 + 10]! ^= 0x40; // first record's data
    disk.setBytes(path, bytes);
    const err = await WriteLog.open('/c', opts).catch((e: unknown) => e);
    expectCode(err, ErrorCodes.CHECKSUM_MISMATCH);
    expect(String(err)).toMatch(/sealed/);
  });

  it('damage in the last segment before a record that says it was synced is CHECKSUM_MISMATCH', async () => {
    const disk = new SimDisk();
    const opts = { capacityBytes: 1 << 20, segmentBytes: 1 << 20, volumeId: VOL, io: disk };
    const wl = await WriteLog.open('/h', opts);
    for (let i = 0; i < 3; i++) await wl.append(i * 1000, Buffer.alloc(1000, i + 1));
    await wl.sync(); // records 1..3 synced; record 4 carries syncedSeq 3
    await wl.append(5000, Buffer.alloc(1000, 9));
    await wl.close();
    const [name] = disk.fileNames('/h').filter((n) => n.startsWith('seg-'));
    const path = `/h/${name}`;
    const bytes = Buffer.from(disk.bytes(path));
    bytes[SEGMENT_HEADER_BYTES + recordBytes(1000) + 60]! ^= 1; // record 2's data
    disk.setBytes(path, bytes);
    const err = await WriteLog.open('/h', opts).catch((e: unknown) => e);
    expectCode(err, ErrorCodes.CHECKSUM_MISMATCH);
    expect(String(err)).toMatch(/was synced/);
  });
});
