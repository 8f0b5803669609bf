// ExtentMap and DirtyIndex against a byte-array model (seeded; SIM_SEED replays one).
import { describe, expect, it } from 'vitest';
import { DirtyIndex } from '../../src/write-log/dirty-index.js';
import { BUCKET_BYTES, ExtentMap, type Piece } from '../../src/write-log/extent-map.js';
import { rng32, randInt } from './sim-disk.js';
import { seeds, withSeed } from './helpers.js';

/** Model: per byte, the seq that wrote it (0 = none) and its "file position". */
function check(map: ExtentMap, seqAt: Float64Array, posAt: Float64Array, size: number): void {
  const gotSeq = new Float64Array(size);
  const gotPos = new Float64Array(size);
  let cursor = 0;
  for (const p of map.lookup(0, size)) {
    expect(p.start).toBeGreaterThanOrEqual(cursor);
    expect(p.end).toBeGreaterThan(p.start);
    gotSeq.fill(p.seq, p.start, p.end);
    if (p.kind === 'data') for (let i = p.start; i < p.end; i++) gotPos[i] = p.dataPos + (i - p.start);
    cursor = p.end;
  }
  const firstDiff = (x: Float64Array, y: Float64Array): number => {
    for (let i = 0; i < size; i++) if (x[i] !== y[i]) return i;
    return -1;
  };
  expect(firstDiff(gotSeq, seqAt)).toBe(-1);
  expect(firstDiff(gotPos, posAt)).toBe(-1);
}

describe('ExtentMap', () => {
  it('splits overlapping writes, newest seq wins whatever the insert order', async () => {
    for (const seed of seeds(11, 12)) {
      await withSeed(seed, async () => {
        const rng = rng32(seed);
        const size = 3 * BUCKET_BYTES + 12345;
        const seqAt = new Float64Array(size);
        const posAt = new Float64Array(size);
        const map = new ExtentMap();
        const n = 400;
        // Records with increasing seq, inserted in a shuffled order (as the
        // newest-wins rule must make order irrelevant).
        const recs: Piece[] = [];
        for (let seq = 1; seq <= n; seq++) {
          const big = rng() < 0.1;
          const len = big ? randInt(rng, 1, BUCKET_BYTES * 2) : randInt(rng, 1, 9000);
          const start = randInt(rng, 0, size - len);
          recs.push({ start, end: start + len, seq, kind: rng() < 0.8 ? 'data' : 'zero', segment: 1, dataPos: randInt(rng, 0, 1e9) });
        }
        const order = recs.slice();
        if (rng() < 0.5) for (let i = order.length - 1; i > 0; i--) { const j = randInt(rng, 0, i + 1); [order[i], order[j]] = [order[j]!, order[i]!]; }
        for (const r of order) map.insert(r);
        for (const r of recs) {
          for (let i = r.start; i < r.end; i++) {
            if (r.seq > seqAt[i]!) { seqAt[i] = r.seq; posAt[i] = r.kind === 'data' ? r.dataPos + (i - r.start) : 0; }
          }
        }
        check(map, seqAt, posAt, size);
        // Sub-range lookups are clipped.
        for (let k = 0; k < 20; k++) {
          const s = randInt(rng, 0, size - 1);
          const e = randInt(rng, s + 1, Math.min(size, s + 3 * BUCKET_BYTES) + 1);
          let c = s;
          for (const p of map.lookup(s, e)) {
            expect(p.start).toBeGreaterThanOrEqual(c);
            expect(p.end).toBeLessThanOrEqual(e);
            expect(seqAt[p.start]).toBe(p.seq);
            c = p.end;
          }
        }
        const cut = Math.floor(n / 2);
        map.dropUpTo(cut);
        for (let i = 0; i < size; i++) if (seqAt[i]! <= cut) { seqAt[i] = 0; posAt[i] = 0; }
        check(map, seqAt, posAt, size);
        let pieces = 0;
        for (const _ of map.pieces()) pieces++;
        expect(pieces).toBe(map.size);
      });
    }
  });
});

describe('DirtyIndex epochs', () => {
  it('as-of-marker views keep pre-images; release drops what the base holds', async () => {
    for (const seed of seeds(12, 5)) {
      await withSeed(seed, async () => {
        const rng = rng32(seed);
        const size = BUCKET_BYTES + 5000;
        const idx = new DirtyIndex();
        const now = new Float64Array(size);
        const asOf = new Map<number, Float64Array>();
        let seq = 0;
        for (let k = 0; k < 300; k++) {
          seq++;
          if (rng() < 0.05) {
            idx.addMarker(seq);
            asOf.set(seq, now.slice());
            continue;
          }
          const len = randInt(rng, 1, 20000);
          const start = randInt(rng, 0, size - len);
          idx.add({ start, end: start + len, seq, kind: 'data', segment: 1, dataPos: 0 });
          now.fill(seq, start, start + len);
        }
        const verify = (view: Float64Array, m: number | undefined, released: number): void => {
          const pieces = idx.lookup(0, size, m);
          const got = new Float64Array(size);
          for (const p of pieces) got.fill(p.seq, p.offset, p.offset + p.length);
          const want = view.map((s) => (s > released ? s : 0));
          expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
          const blocks = idx.changedBlocks(65536, m);
          const wantBlocks = new Set<number>();
          for (let i = 0; i < size; i++) if (want[i]! > 0) { wantBlocks.add(Math.floor(i / 65536)); i = (Math.floor(i / 65536) + 1) * 65536 - 1; }
          expect(blocks).toEqual([...wantBlocks].sort((a, b) => a - b));
        };
        verify(now, undefined, 0);
        for (const [m, view] of asOf) verify(view, m, 0);
        const markers = [...asOf.keys()];
        if (markers.length > 0) {
          const rel = markers[Math.floor(markers.length / 2)]!;
          idx.release(rel);
          verify(now, undefined, rel);
          for (const [m, view] of asOf) if (m > rel) verify(view, m, rel);
        }
        const mid = Math.floor(seq / 2) + 0.5; // a non-marker release point
        idx.release(Math.floor(mid));
        verify(now, undefined, Math.max(Math.floor(mid), markers.length > 0 ? markers[Math.floor(markers.length / 2)]! : 0));
      });
    }
  });
});
