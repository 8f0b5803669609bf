// Compliance of every wrapper stacked on FsObjectStore, plus each wrapper's own behaviour.
import { afterEach, beforeEach, describe, expect, test, vi } from 'vitest';
import { BlockgateError, ErrorCodes } from '../../src/errors.js';
import { BandwidthLimitedObjectStore } from '../../src/object-store/bandwidth.js';
import { CountingObjectStore } from '../../src/object-store/counting.js';
import { FaultInjectingObjectStore } from '../../src/object-store/fault.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { RetryingObjectStore, type RetryInfo } from '../../src/object-store/retry.js';
import { MemoryStore } from '../snapshots/memory-store.js';
import { objectStoreCompliance } from './compliance.js';
import { tempDirs } from './tmp.js';

const tmp = tempDirs('blockgate-wrap-');
const fsStore = (): Promise<FsObjectStore> => FsObjectStore.open(tmp());
let seed = 1000;

objectStoreCompliance('retry over fault injection (30% retryable failures, incl. after-apply puts) over fs', async () => {
  const faulty = new FaultInjectingObjectStore(await fsStore(), {
    seed: seed++,
    rules: [
      { probability: 0.2, error: 'unavailable' },
      { ops: ['get', 'head'], probability: 0.05, error: 'timeout' },
      { ops: ['put'], probability: 0.1, action: 'fail-after', error: 'timeout' },
      { ops: ['list'], probability: 0.3, afterItems: 3, error: 'throttled' },
    ],
  });
  return new RetryingObjectStore(faulty, { baseDelayMs: 1, maxDelayMs: 5, maxAttempts: 50 });
});
objectStoreCompliance('bandwidth-limited (64 MiB/s) over fs', async () =>
  new BandwidthLimitedObjectStore(await fsStore(), { upBytesPerSec: 64 * 1024 * 1024, downBytesPerSec: 64 * 1024 * 1024 }),
);
objectStoreCompliance('counting over fs', async () => new CountingObjectStore(await fsStore()));

describe('RetryingObjectStore', () => {
  test('backoff is exponential with full jitter and capped', async () => {
    const delays: number[] = [];
    const faulty = new FaultInjectingObjectStore(await fsStore(), { rules: [{ ops: ['head'], error: 'unavailable' }] });
    const s = new RetryingObjectStore(faulty, {
      maxAttempts: 6,
      baseDelayMs: 10,
      maxDelayMs: 80,
      random: () => 0.5,
      onRetry: (i: RetryInfo) => delays.push(i.delayMs),
    });
    await expect(s.head('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_UNAVAILABLE, details: expect.objectContaining({ attempts: 6 }) });
    expect(delays).toEqual([5, 10, 20, 40, 40]);
    // full jitter: random() = 0 means no wait at all
    const zero: number[] = [];
    const s0 = new RetryingObjectStore(faulty, { maxAttempts: 3, random: () => 0, onRetry: (i) => zero.push(i.delayMs) });
    await expect(s0.head('k')).rejects.toThrow();
    expect(zero).toEqual([0, 0]);
  });

  test('non-retryable errors are returned at once', async () => {
    const inner = new CountingObjectStore(
      new FaultInjectingObjectStore(await fsStore(), { rules: [{ ops: ['put'], error: 'denied' }, { ops: ['get'], error: 'bad-request' }] }),
    );
    const s = new RetryingObjectStore(inner, { baseDelayMs: 1 });
    await expect(s.put('k', Buffer.from('x'))).rejects.toMatchObject({ code: ErrorCodes.STORE_ACCESS_DENIED });
    await expect(s.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_BAD_REQUEST });
    await expect(s.head('k')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
    const c = inner.snapshot();
    expect([c.put.requests, c.get.requests, c.head.requests]).toEqual([1, 1, 1]);
  });

  test('overall deadline: stops retrying before it would be passed', async () => {
    const faulty = new FaultInjectingObjectStore(await fsStore(), { rules: [{ error: 'throttled', latencyMs: 20 }] });
    const retries: RetryInfo[] = [];
    const s = new RetryingObjectStore(faulty, { deadlineMs: 400, baseDelayMs: 10, maxDelayMs: 50, maxAttempts: 1000, onRetry: (i) => retries.push(i) });
    // The last attempt may be cut short by the deadline itself (STORE_TIMEOUT).
    const err = (await s.get('k').catch((e: unknown) => e)) as BlockgateError;
    expect([ErrorCodes.STORE_THROTTLED, ErrorCodes.STORE_TIMEOUT]).toContain(err.code);
    expect(err.retryable).toBe(true);
    // Every attempt costs at least its 20 ms of injected latency, so a 400 ms deadline admits at most
    // 20 attempts; without the deadline it would go on to maxAttempts (1000).
    const attempts = retries.length + 1;
    expect(attempts).toBeLessThanOrEqual(20);
    expect(retries.map((r) => r.attempt)).toEqual(Array.from({ length: retries.length }, (_, i) => i + 1));
  });

  test('per-attempt timeout aborts a hung attempt and retries', async () => {
    const faulty = new FaultInjectingObjectStore(await fsStore(), { rules: [{ ops: ['head'], nth: 1, action: 'delay', latencyMs: 10_000 }] });
    await faulty.put('k', Buffer.from('v'));
    const retries: RetryInfo[] = [];
    const s = new RetryingObjectStore(faulty, { attemptTimeoutMs: 100, baseDelayMs: 1, onRetry: (i) => retries.push(i) });
    expect((await s.head('k')).size).toBe(1);
    // The hung first attempt was aborted by its timeout and retried (awaited, it would have answered after 10 s, with no retry).
    expect(retries.map((r) => [r.op, r.attempt, r.error.code])).toEqual([['head', 1, ErrorCodes.STORE_TIMEOUT]]);
  });

  test('caller abort stops retrying with the abort, not a retry', async () => {
    const faulty = new FaultInjectingObjectStore(await fsStore(), { rules: [{ error: 'unavailable' }] });
    const s = new RetryingObjectStore(faulty, { baseDelayMs: 50 });
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 100);
    await expect(s.get('k', { signal: ac.signal })).rejects.toMatchObject({ retryable: false });
  });

  test('ambiguous ifNoneMatch put that landed is reported as success', async () => {
    const inner = await fsStore();
    // First put lands, then its answer is "lost" (timeout after apply).
    const faulty = new FaultInjectingObjectStore(inner, { rules: [{ ops: ['put'], nth: 1, action: 'fail-after', error: 'timeout' }] });
    const s = new RetryingObjectStore(faulty, { baseDelayMs: 1 });
    const body = Buffer.from('root manifest v1');
    const { etag } = await s.put('root', body, { ifNoneMatch: '*' });
    expect(etag).toBe((await inner.head('root')).etag);
    expect(faulty.injected.put).toBe(1);
    // A real conflict on the first attempt is still reported.
    await expect(s.put('root', body, { ifNoneMatch: '*' })).rejects.toMatchObject({ code: ErrorCodes.PRECONDITION_FAILED });
  });

  test('ambiguous ifNoneMatch put that lost to another writer stays PRECONDITION_FAILED', async () => {
    const inner = await fsStore();
    // Our first attempt is lost in the network (never applied); meanwhile someone else creates the key.
    let first = true;
    const racy: ObjectStore = {
      location: inner.location,
      get: (k, o) => inner.get(k, o),
      head: (k, o) => inner.head(k, o),
      put: async (k, b, o) => {
        if (first) {
          first = false;
          await inner.put(k, Buffer.from('theirs'));
          throw new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, 'connection reset', { retryable: true });
        }
        return inner.put(k, b, o);
      },
      delete: (k, o) => inner.delete(k, o),
      list: (p, o) => inner.list(p, o),
      close: () => inner.close(),
    };
    const s = new RetryingObjectStore(racy, { baseDelayMs: 1 });
    await expect(s.put('root', Buffer.from('ours'), { ifNoneMatch: '*' })).rejects.toMatchObject({ code: ErrorCodes.PRECONDITION_FAILED });
    expect((await inner.get('root')).body.toString()).toBe('theirs');
  });

  test('ambiguous ifMatch put that landed is reported as success', async () => {
    const inner = await fsStore();
    const v1 = await inner.put('m', Buffer.from('v1'));
    const faulty = new FaultInjectingObjectStore(inner, { rules: [{ ops: ['put'], nth: 1, action: 'fail-after', error: 'unavailable' }] });
    const s = new RetryingObjectStore(faulty, { baseDelayMs: 1 });
    const r = await s.put('m', Buffer.from('v2'), { ifMatch: v1.etag });
    expect((await inner.get('m')).body.toString()).toBe('v2');
    expect(r.etag).toBe((await inner.head('m')).etag);
  });

  test('ambiguity check compares bytes when the ETag is not an MD5', async () => {
    const inner = await fsStore();
    // Simulate a store whose ETags are not MD5s (multipart / SSE-KMS on S3).
    const odd: ObjectStore = {
      location: inner.location,
      get: async (k, o) => ({ ...(await inner.get(k, o)), etag: 'opaque-1' }),
      head: async (k, o) => ({ ...(await inner.head(k, o)), etag: 'opaque-1' }),
      put: (k, b, o) => inner.put(k, b, o),
      delete: (k, o) => inner.delete(k, o),
      list: (p, o) => inner.list(p, o),
      close: () => inner.close(),
    };
    const faulty = new FaultInjectingObjectStore(odd, { rules: [{ ops: ['put'], nth: 1, action: 'fail-after', error: 'timeout' }] });
    const s = new RetryingObjectStore(faulty, { baseDelayMs: 1 });
    await expect(s.put('x', Buffer.from('same'), { ifNoneMatch: '*' })).resolves.toEqual({ etag: 'opaque-1' });
  });

  test('list resumes after the last key yielded', async () => {
    const inner = await fsStore();
    const keys = Array.from({ length: 30 }, (_, i) => `k${String(i).padStart(2, '0')}`);
    for (const k of keys) await inner.put(k, Buffer.from(k));
    const faulty = new FaultInjectingObjectStore(inner, { rules: [{ ops: ['list'], times: 3, afterItems: 7, error: 'unavailable' }] });
    const s = new RetryingObjectStore(faulty, { baseDelayMs: 1 });
    const got: string[] = [];
    for await (const i of s.list('')) got.push(i.key);
    expect(got).toEqual(keys);
    expect(faulty.injected.list).toBe(3);
  });
});

describe('FaultInjectingObjectStore', () => {
  test('nth, every, times and removeRule', async () => {
    const f = new FaultInjectingObjectStore(await fsStore());
    await f.put('k', Buffer.from('v'));
    const id = f.addRule({ ops: ['head'], every: 3, times: 2 });
    const outcome = async (): Promise<string> => f.head('k').then(() => 'ok', (e: BlockgateError) => e.code);
    const seq: string[] = [];
    for (let i = 0; i < 10; i++) seq.push(await outcome());
    expect(seq).toEqual(['ok', 'ok', ErrorCodes.STORE_UNAVAILABLE, 'ok', 'ok', ErrorCodes.STORE_UNAVAILABLE, 'ok', 'ok', 'ok', 'ok']);
    f.removeRule(id);
    f.addRule({ ops: ['get'], nth: 2, error: 'denied' });
    await expect(f.get('k')).resolves.toBeDefined();
    await expect(f.get('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_ACCESS_DENIED, retryable: false, details: expect.objectContaining({ injected: true }) });
    await expect(f.get('k')).resolves.toBeDefined();
  });

  test('probability faults are reproducible from the seed', async () => {
    const inner = await fsStore();
    await inner.put('k', Buffer.from('v'));
    const run = async (seed: number): Promise<string> => {
      const f = new FaultInjectingObjectStore(inner, { seed, rules: [{ probability: 0.3 }] });
      let s = '';
      for (let i = 0; i < 60; i++) s += await f.head('k').then(() => '.', () => 'x');
      return s;
    };
    const a = await run(7);
    expect(await run(7)).toBe(a);
    expect(await run(8)).not.toBe(a);
    const rate = [...a].filter((c) => c === 'x').length / a.length;
    expect(rate).toBeGreaterThan(0.1);
    expect(rate).toBeLessThan(0.55);
  });

  test('fail-after: the put lands but the caller sees the error', async () => {
    const inner = await fsStore();
    const f = new FaultInjectingObjectStore(inner, { rules: [{ ops: ['put', 'delete'], action: 'fail-after', error: 'timeout' }] });
    await expect(f.put('k', Buffer.from('landed'))).rejects.toMatchObject({ code: ErrorCodes.STORE_TIMEOUT, retryable: true });
    expect((await inner.get('k')).body.toString()).toBe('landed');
    await expect(f.delete('k')).rejects.toMatchObject({ code: ErrorCodes.STORE_TIMEOUT });
    await expect(inner.head('k')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
  });

  test('fail before: nothing is applied', async () => {
    const inner = await fsStore();
    const f = new FaultInjectingObjectStore(inner, { rules: [{ ops: ['put'], error: ErrorCodes.STORE_THROTTLED }] });
    await expect(f.put('k', Buffer.from('x'))).rejects.toMatchObject({ code: ErrorCodes.STORE_THROTTLED, retryable: true });
    await expect(inner.head('k')).rejects.toMatchObject({ code: ErrorCodes.OBJECT_NOT_FOUND });
  });

  test('truncated and corrupted get bodies, latency', async () => {
    const inner = await fsStore();
    const body = Buffer.alloc(4096, 7);
    await inner.put('k', body);
    const f = new FaultInjectingObjectStore(inner, { seed: 3, rules: [{ ops: ['get'], nth: 1, action: 'truncate' }, { ops: ['get'], nth: 2, action: 'corrupt' }, { ops: ['get'], nth: 3, action: 'delay', latencyMs: 150 }] });
    const t = await f.get('k');
    expect(t.body.length).toBeLessThan(body.length);
    expect(t.size).toBe(body.length);
    const c = await f.get('k');
    expect(c.body.length).toBe(body.length);
    expect(c.body.equals(body)).toBe(false);
    expect([...c.body].filter((b) => b !== 7).length).toBe(1);
    expect((await inner.get('k')).body.equals(body)).toBe(true); // the stored object is untouched
    // The third get waits 150 ms: a 50 ms timer set before it fires first (timers fire in expiry order).
    const third = f.get('k');
    const first = await Promise.race([third.then(() => 'get'), new Promise((r) => setTimeout(() => r('50 ms timer'), 50))]);
    expect(first).toBe('50 ms timer');
    expect((await third).body.equals(body)).toBe(true);
  });

  test('custom error factory', async () => {
    const f = new FaultInjectingObjectStore(await fsStore(), { rules: [{ error: () => new BlockgateError(ErrorCodes.NO_SPACE, 'full') }] });
    await expect(f.put('k', Buffer.from('x'))).rejects.toMatchObject({ code: ErrorCodes.NO_SPACE });
  });
});

// The token bucket in virtual time (fake setTimeout and performance.now) over an in-memory store: the
// rates are checked exactly, whatever the machine's load.
describe('BandwidthLimitedObjectStore', () => {
  beforeEach(() => { vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'performance', 'Date'] }); });
  afterEach(() => { vi.useRealTimers(); });
  const KiB256 = 256 * 1024;

  test('limits upload and download rates; limits change at runtime', async () => {
    const s = new BandwidthLimitedObjectStore(new MemoryStore(), { upBytesPerSec: 2 * 1024 * 1024 });
    const chunk = Buffer.alloc(KiB256, 1);
    // Debt model: the first request passes at once, each next one waits until the debt is paid:
    // 256 KiB at 2 MiB/s = 125 ms apart, so 12 puts end at 1375 ms.
    let up = 0;
    const puts = Array.from({ length: 12 }, (_, i) => s.put(`k${i}`, chunk).then(() => { up++; }));
    await vi.advanceTimersByTimeAsync(0);
    expect(up).toBe(1);
    await vi.advanceTimersByTimeAsync(1000);
    expect(up).toBeGreaterThanOrEqual(8);
    expect(up).toBeLessThanOrEqual(10);
    await vi.advanceTimersByTimeAsync(500);
    expect(up).toBe(12);
    await Promise.all(puts);

    // Upload unlimited now: 12 more puts pass without any time passing; downloads at 4 MiB/s (62.5 ms per 256 KiB).
    s.setLimits({ upBytesPerSec: 0, downBytesPerSec: 4 * 1024 * 1024 });
    let free = 0;
    const more = Array.from({ length: 12 }, (_, i) => s.put(`u${i}`, chunk).then(() => { free++; }));
    await vi.advanceTimersByTimeAsync(0);
    expect(free).toBe(12);
    await Promise.all(more);
    let down = 0;
    const gets = (async () => { for (let i = 0; i < 12; i++) { await s.get(`k${i}`); down++; } })();
    await vi.advanceTimersByTimeAsync(500);
    expect(down).toBeGreaterThanOrEqual(8);
    expect(down).toBeLessThanOrEqual(10);
    await vi.advanceTimersByTimeAsync(500);
    expect(down).toBe(12);
    await gets;
    expect(s.limits).toEqual({ upBytesPerSec: 0, downBytesPerSec: 4 * 1024 * 1024 });
  });

  test('a waiting request sees a raised limit within one 50 ms pump step', async () => {
    const s = new BandwidthLimitedObjectStore(new MemoryStore(), { upBytesPerSec: 1024 });
    await s.put('a', Buffer.alloc(64 * 1024)); // goes into 64 s of debt
    let state = 'waiting';
    const p = s.put('b', Buffer.alloc(10)).then(() => { state = 'done'; });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(state).toBe('waiting');
    s.setLimits({ upBytesPerSec: 0 });
    await vi.advanceTimersByTimeAsync(50);
    expect(state).toBe('done');
    await p;
  });
});

describe('CountingObjectStore', () => {
  test('counts requests, errors and bytes per operation', async () => {
    const c = new CountingObjectStore(await fsStore());
    await c.put('a', Buffer.alloc(1000));
    await c.put('b', Buffer.alloc(24));
    await c.get('a', { range: { offset: 0, length: 100 } });
    await c.head('b');
    await c.get('missing').catch(() => undefined);
    for await (const _ of c.list('')) void _;
    await c.delete('a');
    const n = c.snapshot();
    expect(n.put).toEqual({ requests: 2, errors: 0, bytesIn: 0, bytesOut: 1024, items: 0 });
    expect(n.get).toEqual({ requests: 2, errors: 1, bytesIn: 100, bytesOut: 0, items: 0 });
    expect(n.list).toMatchObject({ requests: 1, items: 2 });
    expect([n.head.requests, n.delete.requests, c.totalRequests, c.totalBytesOut, c.totalBytesIn]).toEqual([1, 1, 7, 1024, 100]);
    c.reset();
    expect(c.totalRequests).toBe(0);
  });
});
