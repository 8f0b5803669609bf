// A bounded pool of I/O buffers for the NBD data path. Large Buffers live
// outside the V8 heap; allocating one per request makes V8 run full garbage
// collections to account for external memory (measured: ~50% of the CPU on
// 1 MiB I/O). Buffers are grouped in power-of-two size classes.
// Invariants: a buffer is either outstanding (handed out by acquire) or in a
// free list, never both; release() of a buffer the pool did not hand out, or
// of one already released, is ignored (so a view into someone else's memory
// can never be recycled); idle pooled memory never exceeds maxPooledBytes.

const MIN_CLASS = 8 * 1024;

export interface BufferPoolOptions {
  /** Largest buffer pooled; larger requests are plain allocations. */
  maxSize: number;
  /** Bound on idle memory kept in the free lists. */
  maxPooledBytes: number;
}

function classSize(size: number): number {
  let c = MIN_CLASS;
  while (c < size) c *= 2;
  return c;
}

export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private readonly outstanding = new WeakSet<ArrayBuffer>();
  private pooledBytes = 0;

  constructor(private readonly options: BufferPoolOptions) {}

  /** A Buffer of exactly `size` bytes (uninitialised). Give it back with release() when nothing references it. */
  acquire(size: number): Buffer {
    if (size < MIN_CLASS / 2 || size > this.options.maxSize) return Buffer.allocUnsafe(size);
    const cls = classSize(size);
    const list = this.free.get(cls);
    let ab = list?.pop();
    if (ab) this.pooledBytes -= cls;
    else ab = new ArrayBuffer(cls);
    this.outstanding.add(ab);
    return Buffer.from(ab, 0, size);
  }

  /** The buffer was handed out by acquire() and not released yet. */
  owns(buf: Buffer): boolean {
    return this.outstanding.has(buf.buffer as ArrayBuffer);
  }

  release(buf: Buffer): void {
    const ab = buf.buffer as ArrayBuffer;
    if (!this.outstanding.has(ab)) return;
    this.outstanding.delete(ab);
    const cls = ab.byteLength;
    if (this.pooledBytes + cls > this.options.maxPooledBytes) return; // let the GC have it
    let list = this.free.get(cls);
    if (!list) this.free.set(cls, (list = []));
    list.push(ab);
    this.pooledBytes += cls;
  }

  get idleBytes(): number {
    return this.pooledBytes;
  }
}
