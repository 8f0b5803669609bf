// DirtyIndex: what the unreleased part of the log says about the volume, now
// and as of each unreleased snapshot marker.
//
// States: a list of epochs, oldest first. Epoch k holds the records with
// seq in (marker[k-1], marker[k]] (marker[-1] = releasedSeq); the last epoch
// is open (no closing marker yet) and receives new records. Each epoch is an
// ExtentMap (newest-within-epoch wins).
//
// Invariants:
//   - the volume as of marker M = base (the object-store state as of
//     releasedSeq) overlaid by epochs <= M, newer epochs on top; "now" is the
//     overlay of all epochs. So a block rewritten after M keeps its pre-image
//     for M in M's epoch until M is released: copy-on-write for free, because
//     the log never overwrites a record;
//   - release(upto): epochs whose marker <= upto are dropped whole; in the
//     epoch containing upto, pieces with seq <= upto are dropped (they are in
//     the base now). Later epochs only hold seq > upto;
//   - an epoch's map covers exactly the union of ranges written in that
//     epoch (overwrites replace, never uncover), so "blocks changed up to M"
//     is the union of the covered ranges of epochs <= M.

import { ExtentMap, type Piece } from './extent-map.js';

interface Epoch {
  /** Seq of the marker closing this epoch; undefined for the open epoch. */
  markerSeq: number | undefined;
  map: ExtentMap;
}

/** One run of bytes that the log holds, as returned by lookups (offsets are volume offsets). */
export interface DirtyPiece {
  readonly offset: number;
  readonly length: number;
  readonly kind: 'data' | 'zero';
  /** Record that wrote these bytes. */
  readonly seq: number;
  /** Where the data lives (data pieces): segment number and file position. */
  readonly segment: number;
  readonly dataPos: number;
}

function toDirty(p: Piece): DirtyPiece {
  return { offset: p.start, length: p.end - p.start, kind: p.kind, seq: p.seq, segment: p.segment, dataPos: p.dataPos };
}

export class DirtyIndex {
  private epochs: Epoch[] = [{ markerSeq: undefined, map: new ExtentMap() }];

  /** Adds a WRITE/ZERO/TRIM record to the open epoch. */
  add(piece: Piece): void {
    this.epochs[this.epochs.length - 1]!.map.insert(piece);
  }

  /** Closes the open epoch at marker `seq` (records <= seq belong to it). */
  addMarker(seq: number): void {
    const open = this.epochs[this.epochs.length - 1]!;
    open.markerSeq = seq;
    this.epochs.push({ markerSeq: undefined, map: new ExtentMap() });
  }

  /** Epochs visible as of marker `asOf` (all if undefined), newest first. */
  private view(asOf: number | undefined): Epoch[] {
    const out: Epoch[] = [];
    for (let i = this.epochs.length - 1; i >= 0; i--) {
      const e = this.epochs[i]!;
      if (asOf !== undefined && (e.markerSeq === undefined || e.markerSeq > asOf)) continue;
      out.push(e);
    }
    return out;
  }

  /**
   * The pieces of [offset, offset+length) the log holds (as of marker `asOf`,
   * or now), sorted by offset; bytes not covered come from the base.
   */
  lookup(offset: number, length: number, asOf?: number): DirtyPiece[] {
    const end = offset + length;
    let holes: Array<[number, number]> = [[offset, end]];
    const found: Piece[] = [];
    for (const epoch of this.view(asOf)) {
      if (epoch.map.empty) continue;
      const next: Array<[number, number]> = [];
      for (const [hs, he] of holes) {
        let cursor = hs;
        for (const p of epoch.map.lookup(hs, he)) {
          if (p.start > cursor) next.push([cursor, p.start]);
          found.push(p);
          cursor = p.end;
        }
        if (cursor < he) next.push([cursor, he]);
      }
      holes = next;
      if (holes.length === 0) break;
    }
    found.sort((a, b) => a.start - b.start);
    return found.map(toDirty);
  }

  /**
   * Block indexes (for `blockSize`) that unreleased records up to marker
   * `asOf` (or all of them) touched, sorted.
   */
  changedBlocks(blockSize: number, asOf?: number): number[] {
    const set = new Set<number>();
    for (const epoch of this.view(asOf)) {
      for (const p of epoch.map.pieces()) {
        const last = Math.floor((p.end - 1) / blockSize);
        for (let b = Math.floor(p.start / blockSize); b <= last; b++) set.add(b);
      }
    }
    return [...set].sort((a, b) => a - b);
  }

  /** Forgets everything with seq <= upto (now held by the base). */
  release(upto: number): void {
    while (this.epochs.length > 1 && this.epochs[0]!.markerSeq !== undefined && this.epochs[0]!.markerSeq <= upto) {
      this.epochs.shift();
    }
    this.epochs[0]!.map.dropUpTo(upto);
  }

  /** Pieces held, all epochs (for usage/metrics). */
  get pieceCount(): number {
    let n = 0;
    for (const e of this.epochs) n += e.map.size;
    return n;
  }

  /** Segments referenced by any piece (a segment not in this set holds no readable data). */
  referencedSegments(): Set<number> {
    const out = new Set<number>();
    for (const e of this.epochs) for (const p of e.map.pieces()) if (p.kind === 'data') out.add(p.segment);
    return out;
  }
}
