// The file-system operations the write log uses, behind one small interface,
// so tests can count fdatasyncs, inject faults, or run the log on a simulated
// disk that tears unsynced writes (test/write-log/sim-disk.ts).
//
// Contract (what WriteLog relies on, what the real file system gives):
//   - writev/read never return short for regular files except read at EOF;
//   - datasync() makes every completed write to that file durable (data and
//     the size change), nothing about the directory entry;
//   - create() makes a new empty file (exclusive); the name becomes durable
//     only after syncDir(dir); so do rename() and unlink();
//   - lock(dir) gives one holder per directory across processes; a lock whose
//     holder process is dead is taken over.

import * as fs from 'node:fs';
import { join } from 'node:path';
import { BlockgateError, ErrorCodes } from '../errors.js';

export interface LogFile {
  writev(buffers: Buffer[], position: number): Promise<number>;
  /** Reads up to `length` bytes at `position` into target[targetOffset..]; returns bytes read (short only at EOF). */
  read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number>;
  datasync(): Promise<void>;
  truncate(length: number): Promise<void>;
  size(): Promise<number>;
  close(): Promise<void>;
}

export interface LogIo {
  mkdirp(dir: string): Promise<void>;
  list(dir: string): Promise<string[]>;
  /** 'create': new file, fails if it exists. 'rw': existing file. */
  open(path: string, mode: 'create' | 'rw'): Promise<LogFile>;
  /** Whole file, or undefined if it does not exist. */
  readFile(path: string): Promise<Buffer | undefined>;
  rename(from: string, to: string): Promise<void>;
  unlink(path: string): Promise<void>;
  syncDir(dir: string): Promise<void>;
  /** Exclusive lock on `dir`; resolves to its release function. */
  lock(dir: string): Promise<() => Promise<void>>;
}

function p<T>(fn: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, v) => (err ? reject(err) : resolve(v))));
}

class NodeLogFile implements LogFile {
  constructor(private readonly fd: number) {}

  async writev(buffers: Buffer[], position: number): Promise<number> {
    let total = 0;
    let bufs = buffers;
    let pos = position;
    // Regular files do not write short, but a loop costs nothing and removes the assumption.
    for (;;) {
      const n = await p<number>((cb) => fs.writev(this.fd, bufs, pos, cb));
      total += n;
      pos += n;
      let skip = n;
      let i = 0;
      while (i < bufs.length && skip >= bufs[i]!.length) skip -= bufs[i++]!.length;
      if (i >= bufs.length) return total;
      if (n === 0) throw new BlockgateError(ErrorCodes.IO, 'writev wrote nothing');
      bufs = [bufs[i]!.subarray(skip), ...bufs.slice(i + 1)];
    }
  }

  async read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const n = await p<number>((cb) => fs.read(this.fd, target, targetOffset + done, length - done, position + done, cb));
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  datasync(): Promise<void> {
    return p<void>((cb) => fs.fdatasync(this.fd, (err) => cb(err, undefined)));
  }

  truncate(length: number): Promise<void> {
    return p<void>((cb) => fs.ftruncate(this.fd, length, (err) => cb(err, undefined)));
  }

  async size(): Promise<number> {
    return (await p<fs.Stats>((cb) => fs.fstat(this.fd, cb))).size;
  }

  close(): Promise<void> {
    return p<void>((cb) => fs.close(this.fd, (err) => cb(err, undefined)));
  }
}

/** Directories locked by this process (the lock file alone cannot tell two in-process opens apart). */
const lockedHere = new Set<string>();

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export const nodeLogIo: LogIo = {
  async mkdirp(dir) {
    await fs.promises.mkdir(dir, { recursive: true });
  },
  async list(dir) {
    return fs.promises.readdir(dir);
  },
  async open(path, mode) {
    const flags = mode === 'create' ? fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL : fs.constants.O_RDWR;
    const fd = await p<number>((cb) => fs.open(path, flags, 0o600, cb));
    return new NodeLogFile(fd);
  },
  async readFile(path) {
    try {
      return await fs.promises.readFile(path);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  },
  rename: (from, to) => fs.promises.rename(from, to),
  unlink: (path) => fs.promises.unlink(path),
  async syncDir(dir) {
    const fh = await fs.promises.open(dir, 'r');
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  },
  async lock(dir) {
    // A pid file created with O_EXCL; a file naming a dead pid (this host: the
    // log directory is local) is stale and replaced. Good enough for "one
    // daemon per log directory"; not a distributed lock.
    if (lockedHere.has(dir)) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `write log ${dir} is already open in this process`);
    }
    const path = join(dir, 'LOCK');
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = fs.openSync(path, 'wx', 0o600);
        fs.writeSync(fd, `${process.pid}\n`);
        fs.closeSync(fd);
        lockedHere.add(dir);
        return async () => {
          lockedHere.delete(dir);
          await fs.promises.unlink(path).catch(() => undefined);
        };
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number.parseInt((await nodeLogIo.readFile(path))?.toString('utf8') ?? '', 10);
        if (Number.isSafeInteger(owner) && owner > 0 && owner !== process.pid && pidAlive(owner)) {
          throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `write log ${dir} is open in process ${owner}`);
        }
        await fs.promises.unlink(path).catch(() => undefined);
      }
    }
    throw new BlockgateError(ErrorCodes.IO, `cannot lock write log ${dir}`);
  },
};
