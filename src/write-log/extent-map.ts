// ExtentMap: volume byte ranges -> the log record that last wrote them.
//
// Representation: buckets of BUCKET_BYTES (1 MiB) of volume address space,
// each a sorted array of non-overlapping pieces; a piece never crosses a
// bucket boundary, so an insert costs O(log n + pieces in one bucket) per
// MiB touched, whatever the total size of the map.
//
// Invariants (checked by test/write-log/extent-map.test.ts against a byte
// model):
//   - pieces in a bucket are sorted by start, non-overlapping, non-empty;
//   - insert is "newest wins by seq": a piece with a higher seq than the
//     record being inserted is kept, the record only fills around it; so the
//     result does not depend on the order records are inserted in;
//   - a piece's dataPos is the segment-file position of the byte at `start`
//     (WRITE); splitting a piece adjusts it.

export type PieceKind = 'data' | 'zero';

export interface Piece {
  start: number;
  end: number;
  seq: number;
  kind: PieceKind;
  /** Segment number holding the record (data pieces). */
  segment: number;
  /** File position of the data byte for volume offset `start` (data pieces). */
  dataPos: number;
}

export const BUCKET_BYTES = 1024 * 1024;

function slice(p: Piece, start: number, end: number): Piece {
  return { start, end, seq: p.seq, kind: p.kind, segment: p.segment, dataPos: p.kind === 'data' ? p.dataPos + (start - p.start) : 0 };
}

/** Index of the first piece with end > offset. */
function firstEndingAfter(arr: Piece[], offset: number): number {
  let lo = 0;
  let hi = arr.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (arr[mid]!.end <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export class ExtentMap {
  private readonly buckets = new Map<number, Piece[]>();
  private pieceCount = 0;

  get size(): number {
    return this.pieceCount;
  }

  get empty(): boolean {
    return this.pieceCount === 0;
  }

  /** Records that [rec.start, rec.end) was written by record rec.seq (newest by seq wins). */
  insert(rec: Piece): void {
    if (rec.end <= rec.start) return;
    let start = rec.start;
    while (start < rec.end) {
      const b = Math.floor(start / BUCKET_BYTES);
      const end = Math.min(rec.end, (b + 1) * BUCKET_BYTES);
      this.insertInBucket(b, slice(rec, start, end));
      start = end;
    }
  }

  private insertInBucket(b: number, rec: Piece): void {
    let arr = this.buckets.get(b);
    if (!arr) {
      arr = [];
      this.buckets.set(b, arr);
    }
    const s = rec.start;
    const e = rec.end;
    const i = firstEndingAfter(arr, s);
    let j = i;
    const out: Piece[] = [];
    let cursor = s;
    while (j < arr.length && arr[j]!.start < e) {
      const p = arr[j]!;
      if (p.seq > rec.seq) {
        if (p.start > cursor) out.push(slice(rec, cursor, p.start));
        out.push(p);
        cursor = Math.max(cursor, p.end);
      } else {
        if (p.start < s) out.push(slice(p, p.start, s));
        const fillEnd = Math.min(p.end, e);
        if (cursor < fillEnd) {
          out.push(slice(rec, cursor, fillEnd));
          cursor = fillEnd;
        }
        if (p.end > e) out.push(slice(p, e, p.end));
      }
      j++;
    }
    if (cursor < e) out.push(slice(rec, cursor, e));
    arr.splice(i, j - i, ...out);
    this.pieceCount += out.length - (j - i);
  }

  /** Pieces overlapping [start, end), clipped to it, in order. */
  lookup(start: number, end: number): Piece[] {
    const out: Piece[] = [];
    if (end <= start) return out;
    const last = Math.floor((end - 1) / BUCKET_BYTES);
    for (let b = Math.floor(start / BUCKET_BYTES); b <= last; b++) {
      const arr = this.buckets.get(b);
      if (!arr) continue;
      for (let i = firstEndingAfter(arr, start); i < arr.length && arr[i]!.start < end; i++) {
        const p = arr[i]!;
        out.push(p.start >= start && p.end <= end ? p : slice(p, Math.max(p.start, start), Math.min(p.end, end)));
      }
    }
    return out;
  }

  /** Drops every piece with seq <= uptoSeq; returns how many were dropped. */
  dropUpTo(uptoSeq: number): number {
    let dropped = 0;
    for (const [b, arr] of this.buckets) {
      const kept = arr.filter((p) => p.seq > uptoSeq);
      dropped += arr.length - kept.length;
      if (kept.length === 0) this.buckets.delete(b);
      else if (kept.length !== arr.length) this.buckets.set(b, kept);
    }
    this.pieceCount -= dropped;
    return dropped;
  }

  /** Every piece, in volume order. */
  *pieces(): Generator<Piece> {
    const keys = [...this.buckets.keys()].sort((a, b) => a - b);
    for (const k of keys) yield* this.buckets.get(k)!;
  }

  /** Buckets that hold at least one piece (sorted), for block-granular views. */
  bucketKeys(): number[] {
    return [...this.buckets.keys()].sort((a, b) => a - b);
  }
}
