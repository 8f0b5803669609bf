import { describe, expect, it } from 'vitest';
import { BufferPool } from '../../src/util/buffer-pool.js';

describe('BufferPool', () => {
  it('reuses a released buffer of the same size class', () => {
    const pool = new BufferPool({ maxSize: 1 << 20, maxPooledBytes: 1 << 22 });
    const a = pool.acquire(100_000);
    expect(a.length).toBe(100_000);
    pool.release(a);
    const b = pool.acquire(120_000); // same 128 KiB class
    expect(b.buffer).toBe(a.buffer);
    expect(b.length).toBe(120_000);
  });

  it('never recycles memory it did not hand out, nor a buffer twice', () => {
    const pool = new BufferPool({ maxSize: 1 << 20, maxPooledBytes: 1 << 22 });
    const foreign = Buffer.from(new ArrayBuffer(65536)); // looks like a pool class, is not ours
    expect(pool.owns(foreign)).toBe(false);
    pool.release(foreign);
    expect(pool.idleBytes).toBe(0);
    const a = pool.acquire(65536);
    expect(pool.owns(a)).toBe(true);
    pool.release(a);
    expect(pool.owns(a)).toBe(false);
    pool.release(a); // double release is ignored
    expect(pool.idleBytes).toBe(65536);
    const b = pool.acquire(65536);
    const c = pool.acquire(65536);
    expect(b.buffer).toBe(a.buffer);
    expect(c.buffer).not.toBe(a.buffer); // not handed out twice
  });

  it('keeps idle memory under its cap and leaves small and huge sizes to the allocator', () => {
    const pool = new BufferPool({ maxSize: 1 << 20, maxPooledBytes: 256 * 1024 });
    const bufs = Array.from({ length: 4 }, () => pool.acquire(128 * 1024));
    for (const b of bufs) pool.release(b);
    expect(pool.idleBytes).toBe(256 * 1024);
    const small = pool.acquire(100);
    const huge = pool.acquire(2 << 20);
    pool.release(small);
    pool.release(huge);
    expect(pool.idleBytes).toBe(256 * 1024);
  });
});
