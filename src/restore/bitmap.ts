// RestoreBitmap: which blocks of a lazily restored volume the local disk
// already holds. One bit per block, persisted as a whole file (a 10 GiB
// volume at 512 KiB blocks is 2.5 KiB) replaced atomically.
//
// Invariant kept by the owner (StoredVolume): a bit is persisted only after
// the disk fdatasync that made that block's content durable, so after a crash
// a set bit always means "the disk holds this block"; an unset bit means
// "fetch it" (from the volume's current root, overlaid with the write log).
import { readFileSync } from 'node:fs';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { writeFileAtomic } from '../util/atomic-file.js';

const MAGIC = Buffer.from('BGRB0001');

export class RestoreBitmap {
  private readonly bits: Uint8Array;
  private count = 0;

  constructor(readonly blocks: number, bits?: Uint8Array) {
    this.bits = bits ?? new Uint8Array(Math.ceil(blocks / 8));
    if (bits) for (let i = 0; i < blocks; i++) if (this.has(i)) this.count++;
  }

  has(i: number): boolean {
    return (this.bits[i >> 3]! & (1 << (i & 7))) !== 0;
  }

  set(i: number): void {
    if (this.has(i)) return;
    this.bits[i >> 3]! |= 1 << (i & 7);
    this.count++;
  }

  get restored(): number {
    return this.count;
  }

  get complete(): boolean {
    return this.count >= this.blocks;
  }

  /** First unrestored block at or after `from`, or -1. */
  nextMissing(from: number): number {
    for (let i = from; i < this.blocks; i++) {
      if (this.bits[i >> 3] === 0xff) { i |= 7; continue; }
      if (!this.has(i)) return i;
    }
    return -1;
  }

  snapshot(): Buffer {
    return Buffer.concat([MAGIC, Buffer.from(new Uint32Array([this.blocks]).buffer), Buffer.from(this.bits)]);
  }

  save(path: string, image = this.snapshot()): void {
    writeFileAtomic(path, image);
  }

  static load(path: string, blocks: number): RestoreBitmap | undefined {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (buf.length < 12 || !buf.subarray(0, 8).equals(MAGIC) || buf.readUInt32LE(8) !== blocks || buf.length !== 12 + Math.ceil(blocks / 8)) {
      throw new BlockgateError(ErrorCodes.IO, `restore bitmap ${path} is damaged or belongs to another volume size`);
    }
    return new RestoreBitmap(blocks, new Uint8Array(buf.subarray(12)));
  }
}
