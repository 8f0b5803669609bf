// Per-key mutual exclusion for FsObjectStore, within one process and across
// processes on one host sharing a store directory.
//
// States of a key's lock: free -> held (lock file exists, names the holder's
// pid) -> free (holder unlinked it). Within a process, waiters queue on a
// promise chain per key, so only one in-process caller at a time touches the
// lock file. Across processes the lock file is created with link() (atomic
// create-exclusive: the file appears complete, with its owner line, or not at
// all); a contender that finds it polls with bounded backoff.
//
// Invariants:
//   - a lock file whose owner process is dead (same host: kill(pid, 0) says
//     ESRCH) or, for another host, older than `staleMs`, is stale and broken
//     by renaming it aside; the breaker then checks that it renamed the same
//     inode it judged stale (if not, it links it back);
//   - release unlinks the lock file only if it is still the holder's inode.
// Limitation (documented in docs/object-store.md): breaking a stale lock has a
// microsecond window in which two *other* processes could both end up holding
// it; it needs a crashed holder plus three-way contention at that instant.
import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { BlockgateError, ErrorCodes } from '../errors.js';
import { throwIfAborted } from './keys.js';

const HOST = hostname();

export interface KeyLockOptions {
  /** Lock files of another host older than this are stale (ms). */
  staleMs?: number;
  /** Give up waiting after this long (ms). */
  timeoutMs?: number;
}

export class KeyLocks {
  private readonly chains = new Map<string, Promise<void>>();
  private readonly staleMs: number;
  private readonly timeoutMs: number;

  constructor(
    private readonly lockDir: string,
    private readonly tmpDir: string,
    options: KeyLockOptions = {},
  ) {
    this.staleMs = options.staleMs ?? 60_000;
    this.timeoutMs = options.timeoutMs ?? 60_000;
  }

  /** Run `fn` while holding the lock named `name` (a filesystem-safe string). */
  async withLock<T>(name: string, fn: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    // In-process queue: wait for the previous holder in this process.
    const prev = this.chains.get(name) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = prev.then(() => mine);
    this.chains.set(name, chained);
    try {
      await prev;
      const ino = await this.acquireFile(name, signal);
      try {
        return await fn();
      } finally {
        await this.releaseFile(name, ino);
      }
    } finally {
      release();
      if (this.chains.get(name) === chained) this.chains.delete(name);
    }
  }

  private lockPath(name: string): string {
    return join(this.lockDir, name + '.lock');
  }

  private async acquireFile(name: string, signal: AbortSignal | undefined): Promise<number> {
    const path = this.lockPath(name);
    const deadline = Date.now() + this.timeoutMs;
    let delay = 1;
    for (;;) {
      throwIfAborted(signal, `lock ${name}`);
      const tmp = join(this.tmpDir, `${process.pid}.${randomBytes(6).toString('hex')}.lock`);
      await fsp.writeFile(tmp, `${process.pid} ${HOST} ${Date.now()}\n`);
      try {
        await fsp.link(tmp, path);
        const st = await fsp.stat(tmp);
        return st.ino;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        await fsp.unlink(tmp).catch(() => undefined);
      }
      if (await this.breakIfStale(path)) continue;
      if (Date.now() > deadline) {
        throw new BlockgateError(ErrorCodes.STORE_TIMEOUT, `timed out waiting for lock ${path}`, {
          retryable: true,
          details: { path },
        });
      }
      await sleep(delay + Math.random() * delay);
      delay = Math.min(delay * 2, 20);
    }
  }

  /** True when the lock at `path` was stale and has been removed (or vanished). */
  private async breakIfStale(path: string): Promise<boolean> {
    let st;
    let text;
    try {
      st = await fsp.stat(path);
      text = await fsp.readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true; // released meanwhile
      throw err;
    }
    const [pidText, host] = text.trim().split(' ');
    const pid = Number(pidText);
    let stale: boolean;
    if (host === HOST && Number.isInteger(pid) && pid > 0) {
      stale = !processAlive(pid);
    } else {
      stale = Date.now() - st.mtimeMs > this.staleMs;
    }
    if (!stale) return false;
    const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`;
    try {
      await fsp.rename(path, aside);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true;
      throw err;
    }
    const moved = await fsp.stat(aside);
    if (moved.ino !== st.ino) {
      // We moved a lock someone created after our check: put it back.
      await fsp.link(aside, path).catch(() => undefined);
    }
    await fsp.unlink(aside).catch(() => undefined);
    return true;
  }

  private async releaseFile(name: string, ino: number): Promise<void> {
    const path = this.lockPath(name);
    try {
      const st = await fsp.stat(path);
      if (st.ino === ino) await fsp.unlink(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
