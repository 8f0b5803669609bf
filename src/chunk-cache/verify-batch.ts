// Coalesces the chunk cache's large thread-pool slot reads into native
// preadVerifyMany jobs: reads of at least minBatchRead bytes started in the
// same tick (the blocks of one NBD request) go to the pool as one job of up
// to maxBytes instead of one job each. Every job costs the event loop a queue
// and a thread wake-up (~25 µs on a VM), as much as the CRC of 512 KiB.
// Smaller reads each get their own job: they reach the pool only when
// RWF_NOWAIT found them outside the page cache, i.e. they wait for the disk,
// and batched they would wait for it one after another (queue depth 1).
// Large reads batch at most maxBytes per job, so 1 MiB requests still run in
// parallel, a job each.
// Invariant: each read's promise settles exactly once, with its own result;
// a failed read fails only its own promise.
import * as native from '../native/index.js';

/** The addon's limit on reads per job. */
const MAX_READS_PER_JOB = 1024;

interface Waiter {
  resolve(bad: number): void;
  reject(err: unknown): void;
}

export class VerifyBatcher {
  private list: native.VerifyList = [];
  private waiters: Waiter[] = [];
  private bytes = 0;
  private scheduled = false;

  constructor(
    private readonly fd: number,
    private readonly unitBytes: number,
    private readonly maxBytes: number,
    private readonly minBatchRead: number,
  ) {}

  /**
   * Reads all of `buf` from file `position` and checks it against
   * crcs[firstUnit..]: resolves -1 when intact, else the index of the first
   * bad unit; rejects with the read's error. A read of minBatchRead bytes
   * or more is queued until the current tick's microtasks have run (or the
   * batch is full); a smaller one starts at once.
   */
  read(buf: Uint8Array, position: number, crcs: Uint32Array, firstUnit: number): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      if (buf.length < this.minBatchRead) {
        this.send([buf, buf.length, position, crcs, firstUnit], [{ resolve, reject }]);
        return;
      }
      this.list.push(buf, buf.length, position, crcs, firstUnit);
      this.waiters.push({ resolve, reject });
      this.bytes += buf.length;
      if (this.bytes >= this.maxBytes || this.waiters.length >= MAX_READS_PER_JOB) {
        this.flush();
      } else if (!this.scheduled) {
        this.scheduled = true;
        queueMicrotask(this.flushScheduled);
      }
    });
  }

  private readonly flushScheduled = (): void => {
    this.scheduled = false;
    this.flush();
  };

  private flush(): void {
    if (this.waiters.length === 0) return;
    const { list, waiters } = this;
    this.list = [];
    this.waiters = [];
    this.bytes = 0;
    this.send(list, waiters);
  }

  private send(list: native.VerifyList, waiters: Waiter[]): void {
    let job: Promise<Float64Array>;
    try {
      job = native.preadVerifyMany(this.fd, list, this.unitBytes);
    } catch (err) {
      for (const w of waiters) w.reject(err);
      return;
    }
    job.then(
      (r) => {
        for (let i = 0; i < waiters.length; i++) {
          const errno = r[2 * i + 1]!;
          if (errno !== 0) waiters[i]!.reject(native.readError(errno));
          else waiters[i]!.resolve(r[2 * i]!);
        }
      },
      (err: unknown) => {
        for (const w of waiters) w.reject(err);
      },
    );
  }
}
