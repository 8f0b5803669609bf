// A FIFO of received chunks that parsers consume from without touching a
// socket. consume(n) returns a view (subarray) when the bytes lie in one
// chunk and copies only across chunk boundaries. Invariant: chunks pushed
// here are never modified afterwards by the producer (Node gives each socket
// read a fresh Buffer), so views handed out stay valid.

export class ByteQueue {
  private chunks: Buffer[] = [];
  private head = 0; // read offset into chunks[0]
  private total = 0;

  get length(): number {
    return this.total;
  }

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.total += chunk.length;
  }

  /** Removes and returns the first n bytes (n <= length). */
  consume(n: number): Buffer {
    if (n > this.total) throw new RangeError(`consume(${n}) with ${this.total} buffered`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0]!;
    const avail = first.length - this.head;
    if (n <= avail) {
      const view = first.subarray(this.head, this.head + n);
      this.advance(n);
      return view;
    }
    return this.consumeWith(n, Buffer.allocUnsafe);
  }

  /**
   * Removes the first n bytes (n <= length): a view when they lie in one
   * chunk, else a copy into a buffer from `allocate` (default: a new one).
   */
  consumeWith(n: number, allocate: (n: number) => Buffer): Buffer {
    if (n > this.total) throw new RangeError(`consume(${n}) with ${this.total} buffered`);
    const first = this.chunks[0];
    if (n === 0 || (first && n <= first.length - this.head)) return this.consume(n);
    const out = allocate(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length - this.head, n - filled);
      c.copy(out, filled, this.head, this.head + take);
      filled += take;
      this.advance(take);
    }
    return out;
  }

  /** Drops up to n bytes; returns how many were dropped. */
  skip(n: number): number {
    const dropped = Math.min(n, this.total);
    let left = dropped;
    while (left > 0) {
      const c = this.chunks[0]!;
      const take = Math.min(c.length - this.head, left);
      this.advance(take);
      left -= take;
    }
    return dropped;
  }

  /** Removes and returns everything buffered (used when handing over to another parser or TLS). */
  drain(): Buffer {
    return this.consume(this.total);
  }

  private advance(n: number): void {
    this.head += n;
    this.total -= n;
    if (this.head === this.chunks[0]!.length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
