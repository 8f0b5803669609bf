// Bounded work pool with backpressure. States: open → draining → closed.
// Invariants: at most `concurrency` tasks run at once; at most `concurrency +
// queueLimit` tasks are accepted (running + waiting); `push` resolves only when
// the task has been admitted, so a producer awaiting `push` can never build an
// unbounded backlog; the first task error is kept, later tasks are not started
// after it, and `drain()` rethrows it.

export class WorkPool {
  private running = 0;
  private readonly waiting: Array<() => Promise<void>> = [];
  private readonly spaceWaiters: Array<() => void> = [];
  private idleWaiters: Array<() => void> = [];
  private firstError: unknown;
  private failed = false;

  constructor(private readonly concurrency: number, private readonly queueLimit = concurrency) {
    if (!(concurrency >= 1)) throw new Error('concurrency must be >= 1');
  }

  get error(): unknown { return this.firstError; }
  get hasFailed(): boolean { return this.failed; }
  get inFlight(): number { return this.running + this.waiting.length; }

  /** Admits `task` (waiting for room first). Throws the first task error, if any. */
  async push(task: () => Promise<void>): Promise<void> {
    while (!this.failed && this.running + this.waiting.length >= this.concurrency + this.queueLimit) {
      await new Promise<void>((res) => this.spaceWaiters.push(res));
    }
    if (this.failed) throw this.firstError;
    this.waiting.push(task);
    this.pump();
  }

  /** Waits until every admitted task has finished; rethrows the first error. */
  async drain(): Promise<void> {
    while (this.running > 0 || this.waiting.length > 0) {
      await new Promise<void>((res) => this.idleWaiters.push(res));
    }
    if (this.failed) throw this.firstError;
  }

  private pump(): void {
    while (this.running < this.concurrency && this.waiting.length > 0) {
      const task = this.waiting.shift()!;
      if (this.failed) { continue; }
      this.running++;
      void task().then(
        () => this.finish(),
        (err: unknown) => {
          if (!this.failed) { this.failed = true; this.firstError = err; }
          this.finish();
        },
      );
    }
    if (this.failed) this.waiting.length = 0;
    this.wake();
  }

  private finish(): void {
    this.running--;
    this.pump();
  }

  private wake(): void {
    while (this.spaceWaiters.length > 0 && (this.failed || this.running + this.waiting.length < this.concurrency + this.queueLimit)) {
      this.spaceWaiters.shift()!();
    }
    if (this.running === 0 && this.waiting.length === 0) {
      const w = this.idleWaiters;
      this.idleWaiters = [];
      for (const f of w) f();
    }
  }
}

/** Counting semaphore (FIFO). Invariant: at most `permits` holders at once. */
export class Semaphore {
  private readonly waiters: Array<() => void> = [];
  constructor(private permits: number) {}

  async acquire(): Promise<void> {
    if (this.permits > 0) { this.permits--; return; }
    await new Promise<void>((res) => this.waiters.push(res));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next(); else this.permits++;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try { return await fn(); } finally { this.release(); }
  }
}

/** Runs `fn` over `items` with at most `concurrency` at once; keeps order of results. */
export async function mapBounded<T, R>(items: readonly T[], concurrency: number, fn: (item: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (!failed && next < items.length) {
      const i = next++;
      try { out[i] = await fn(items[i]!, i); } catch (err) { failed = true; throw err; }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, worker));
  return out;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}
