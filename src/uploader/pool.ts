// UploadPool: bounded concurrent workers shared by every stored volume of a
// daemon. A job is one volume's upload of one snapshot (a sorted list of
// changed block indexes). Workers take batches of block tasks: a batch is a
// run of consecutive entries of one job (one volume, one block range), cut
// from the job's scan token (its cursor) by the worker holding the token —
// taking the token and advancing it is one synchronous step, so no two
// workers ever get the same block, and a volume's blocks are read roughly in
// order (sequential disk reads).
//
// States of a job: queued (batches left) -> draining (token at the end,
// batches running) -> done | failed (first error: no new batch is taken,
// running ones finish, then the job's promise rejects).
// Invariants: at most `workers` batches run at once; jobs are served round
// robin, so one busy volume cannot starve another.
import { errorMessage } from '../errors.js';

export interface PoolJob {
  readonly volume: string;
  readonly blocks: readonly number[];
  readonly task: (index: number) => Promise<void>;
  /** Scan token: index into `blocks` of the next batch. */
  cursor: number;
  running: number;
  error: unknown;
  failed: boolean;
  finish: (err?: unknown) => void;
}

export interface UploadPoolOptions {
  workers?: number;
  /** Blocks per batch (default 4). */
  batchBlocks?: number;
  /** A batch never spans more than this many block indexes (default 64). */
  batchSpan?: number;
}

export class UploadPool {
  readonly workers: number;
  private readonly batchBlocks: number;
  private readonly batchSpan: number;
  private readonly jobs: PoolJob[] = [];
  private active = 0;
  private rr = 0;
  private closed = false;
  private busyBatches = 0;

  constructor(options: UploadPoolOptions = {}) {
    this.workers = Math.max(1, options.workers ?? 8);
    this.batchBlocks = Math.max(1, options.batchBlocks ?? 4);
    this.batchSpan = Math.max(this.batchBlocks, options.batchSpan ?? 64);
  }

  /** Batches running right now. */
  get busy(): number {
    return this.busyBatches;
  }

  /** Runs `task` for every block (bounded by the pool); rejects with the first task error. */
  run(volume: string, blocks: readonly number[], task: (index: number) => Promise<void>): Promise<void> {
    if (this.closed) return Promise.reject(new Error('upload pool is closed'));
    if (blocks.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const job: PoolJob = {
        volume, blocks, task, cursor: 0, running: 0, error: undefined, failed: false,
        finish: (err) => (err === undefined ? resolve() : reject(err)),
      };
      this.jobs.push(job);
      this.spawn();
    });
  }

  private spawn(): void {
    while (this.active < this.workers && this.jobs.some((j) => !j.failed && j.cursor < j.blocks.length)) {
      this.active++;
      void this.worker();
    }
  }

  /** Takes the next batch (round robin over jobs): synchronous, so the scan token is never shared. */
  private take(): { job: PoolJob; batch: number[] } | undefined {
    for (let k = 0; k < this.jobs.length; k++) {
      const job = this.jobs[(this.rr + k) % this.jobs.length]!;
      if (job.failed || job.cursor >= job.blocks.length) continue;
      this.rr = (this.rr + k + 1) % Math.max(1, this.jobs.length);
      const first = job.blocks[job.cursor]!;
      const batch: number[] = [];
      while (job.cursor < job.blocks.length && batch.length < this.batchBlocks && job.blocks[job.cursor]! - first < this.batchSpan) {
        batch.push(job.blocks[job.cursor++]!);
      }
      job.running++;
      return { job, batch };
    }
    return undefined;
  }

  private async worker(): Promise<void> {
    try {
      for (;;) {
        const next = this.take();
        if (!next) return;
        const { job, batch } = next;
        this.busyBatches++;
        try {
          for (const index of batch) {
            if (job.failed) break;
            await job.task(index);
          }
        } catch (err) {
          if (!job.failed) {
            job.failed = true;
            job.error = err instanceof Error ? err : new Error(errorMessage(err));
          }
        } finally {
          this.busyBatches--;
          job.running--;
          this.settle(job);
        }
      }
    } finally {
      this.active--;
    }
  }

  private settle(job: PoolJob): void {
    if (job.running > 0) return;
    if (!job.failed && job.cursor < job.blocks.length) return;
    const i = this.jobs.indexOf(job);
    if (i < 0) return;
    this.jobs.splice(i, 1);
    job.finish(job.failed ? job.error : undefined);
  }

  close(): void {
    this.closed = true;
    for (const job of this.jobs) {
      if (!job.failed) { job.failed = true; job.error = new Error('upload pool closed'); }
      this.settle(job);
    }
  }
}
