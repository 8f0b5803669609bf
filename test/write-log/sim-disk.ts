// A simulated disk for the write log (LogIo), in the spirit of FoundationDB's
// AsyncFileNonDurable and TigerBeetle's testing/storage.zig: writes land in a
// volatile "page cache"; datasync() makes a file's content durable; the
// directory namespace (create/rename/unlink) is durable only after
// syncDir(). crash(rng) returns the disk as a power loss would leave it:
//   - each unsynced write survives whole, not at all, or torn (each 512-byte
//     sector of it independently old or new), chosen by the seeded rng;
//   - an unsynced truncate survives or not;
//   - a random prefix of the unsynced directory operations survives (a
//     journaling file system commits metadata in order).
// Also: fault injection (fail the next N calls of an operation) and counters.

import type { LogFile, LogIo } from '../../src/write-log/io.js';

export type Rng = () => number;

export { mulberry32 as rng32 } from '../harness/prng.js';

export function randInt(rng: Rng, lo: number, hiExclusive: number): number {
  return lo + Math.floor(rng() * (hiExclusive - lo));
}

const SECTOR = 512;

type FileOp = { kind: 'write'; pos: number; data: Buffer } | { kind: 'truncate'; length: number };

class Inode {
  durable: Buffer = Buffer.alloc(0);
  current: Buffer = Buffer.alloc(0);
  ops: FileOp[] = [];
}

type DirOp = { kind: 'link'; name: string; inode: Inode } | { kind: 'unlink'; name: string } | { kind: 'rename'; from: string; to: string };

function resize(buf: Buffer, length: number): Buffer {
  if (buf.length === length) return buf;
  const out = Buffer.alloc(length);
  buf.copy(out, 0, 0, Math.min(length, buf.length));
  return out;
}

function applyWrite(buf: Buffer, pos: number, data: Buffer): Buffer {
  const out = pos + data.length > buf.length ? resize(buf, pos + data.length) : buf;
  data.copy(out, pos);
  return out;
}

export type FaultOp = 'writev' | 'read' | 'datasync' | 'open' | 'syncDir' | 'rename' | 'unlink';

export class SimDisk implements LogIo {
  /** name -> inode as the running system sees it. */
  private names = new Map<string, Inode>();
  /** name -> inode as of the last syncDir (what survives a crash for sure). */
  private durableNames = new Map<string, Inode>();
  private dirOps: DirOp[] = [];
  private locks = new Set<string>();
  private faults = new Map<FaultOp, number>();
  readonly counts: Record<string, number> = {};

  private count(op: string): void {
    this.counts[op] = (this.counts[op] ?? 0) + 1;
  }

  /** The next `times` calls of `op` fail with EIO. */
  failNext(op: FaultOp, times = 1): void {
    this.faults.set(op, times);
  }

  private fault(op: FaultOp): void {
    this.count(op);
    const n = this.faults.get(op) ?? 0;
    if (n > 0) {
      this.faults.set(op, n - 1);
      throw Object.assign(new Error(`simulated EIO in ${op}`), { code: 'EIO' });
    }
  }

  // Test access to raw bytes (for garbling/truncating files directly).
  fileNames(dir: string): string[] {
    return [...this.names.keys()].filter((n) => n.startsWith(dir + '/')).map((n) => n.slice(dir.length + 1));
  }

  bytes(path: string): Buffer {
    const ino = this.names.get(path);
    if (!ino) throw new Error(`no such file ${path}`);
    return ino.current;
  }

  /** Replaces a file's content, durably (as a test's "disk editor"). */
  setBytes(path: string, content: Buffer): void {
    const ino = this.names.get(path);
    if (!ino) throw new Error(`no such file ${path}`);
    ino.current = Buffer.from(content);
    ino.durable = Buffer.from(content);
    ino.ops = [];
  }

  /** The disk after a power loss now; this disk is left untouched. */
  crash(rng: Rng): SimDisk {
    const after = new SimDisk();
    const crashed = new Map<Inode, Inode>();
    const surviving = (ino: Inode): Inode => {
      let out = crashed.get(ino);
      if (out) return out;
      let content: Buffer = Buffer.from(ino.durable);
      for (const op of ino.ops) {
        if (op.kind === 'truncate') {
          if (rng() < 0.5) content = resize(content, op.length);
          continue;
        }
        const fate = rng();
        if (fate < 0.3) continue; // lost
        if (fate < 0.6) {
          content = applyWrite(content, op.pos, op.data); // whole
          continue;
        }
        // torn: sector by sector (sectors of the file, not of the write)
        for (let s = Math.floor(op.pos / SECTOR) * SECTOR; s < op.pos + op.data.length; s += SECTOR) {
          if (rng() < 0.5) continue;
          const from = Math.max(s, op.pos);
          const to = Math.min(s + SECTOR, op.pos + op.data.length);
          content = applyWrite(content, from, op.data.subarray(from - op.pos, to - op.pos));
        }
      }
      out = new Inode();
      out.durable = content;
      out.current = Buffer.from(content);
      crashed.set(ino, out);
      return out;
    };
    const ns = new Map(this.durableNames);
    const keep = Math.floor(rng() * (this.dirOps.length + 1));
    for (const op of this.dirOps.slice(0, keep)) applyDirOp(ns, op);
    for (const [name, ino] of ns) after.names.set(name, surviving(ino));
    after.durableNames = new Map(after.names);
    return after;
  }

  /** Every unsynced write and directory change made durable (a clean OS shutdown). */
  flushAll(): void {
    for (const ino of new Set(this.names.values())) {
      ino.durable = Buffer.from(ino.current);
      ino.ops = [];
    }
    this.durableNames = new Map(this.names);
    this.dirOps = [];
  }

  // ---------------------------------------------------------------- LogIo

  async mkdirp(_dir: string): Promise<void> {}

  async list(dir: string): Promise<string[]> {
    return this.fileNames(dir);
  }

  async open(path: string, mode: 'create' | 'rw'): Promise<LogFile> {
    this.fault('open');
    let ino = this.names.get(path);
    if (mode === 'create') {
      if (ino) throw Object.assign(new Error(`EEXIST: ${path}`), { code: 'EEXIST' });
      ino = new Inode();
      this.names.set(path, ino);
      this.dirOps.push({ kind: 'link', name: path, inode: ino });
    } else if (!ino) {
      throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    }
    return new SimFile(this, ino);
  }

  async readFile(path: string): Promise<Buffer | undefined> {
    const ino = this.names.get(path);
    return ino ? Buffer.from(ino.current) : undefined;
  }

  async rename(from: string, to: string): Promise<void> {
    this.fault('rename');
    const ino = this.names.get(from);
    if (!ino) throw Object.assign(new Error(`ENOENT: ${from}`), { code: 'ENOENT' });
    this.names.delete(from);
    this.names.set(to, ino);
    this.dirOps.push({ kind: 'rename', from, to });
  }

  async unlink(path: string): Promise<void> {
    this.fault('unlink');
    if (!this.names.delete(path)) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
    this.dirOps.push({ kind: 'unlink', name: path });
  }

  async syncDir(_dir: string): Promise<void> {
    this.fault('syncDir');
    for (const op of this.dirOps) applyDirOp(this.durableNames, op);
    this.dirOps = [];
  }

  async lock(dir: string): Promise<() => Promise<void>> {
    if (this.locks.has(dir)) throw new Error(`${dir} is locked`);
    this.locks.add(dir);
    return async () => {
      this.locks.delete(dir);
    };
  }

  /** @internal */ hit(op: FaultOp): void {
    this.fault(op);
  }
}

function applyDirOp(ns: Map<string, Inode>, op: DirOp): void {
  if (op.kind === 'link') ns.set(op.name, op.inode);
  else if (op.kind === 'unlink') ns.delete(op.name);
  else {
    const ino = ns.get(op.from);
    if (ino) {
      ns.delete(op.from);
      ns.set(op.to, ino);
    }
  }
}

class SimFile implements LogFile {
  private closed = false;

  constructor(private readonly disk: SimDisk, private readonly ino: Inode) {}

  private check(): void {
    if (this.closed) throw Object.assign(new Error('EBADF'), { code: 'EBADF' });
  }

  async writev(buffers: Buffer[], position: number): Promise<number> {
    this.check();
    this.disk.hit('writev');
    const data = Buffer.concat(buffers);
    this.ino.current = applyWrite(this.ino.current, position, data);
    this.ino.ops.push({ kind: 'write', pos: position, data });
    await Promise.resolve();
    return data.length;
  }

  async read(target: Buffer, targetOffset: number, length: number, position: number): Promise<number> {
    this.check();
    this.disk.hit('read');
    const n = Math.max(0, Math.min(length, this.ino.current.length - position));
    this.ino.current.copy(target, targetOffset, position, position + n);
    await Promise.resolve();
    return n;
  }

  async datasync(): Promise<void> {
    this.check();
    this.disk.hit('datasync');
    await Promise.resolve();
    this.ino.durable = Buffer.from(this.ino.current);
    this.ino.ops = [];
  }

  async truncate(length: number): Promise<void> {
    this.check();
    this.ino.current = resize(this.ino.current, length);
    this.ino.ops.push({ kind: 'truncate', length });
  }

  async size(): Promise<number> {
    this.check();
    return this.ino.current.length;
  }

  async close(): Promise<void> {
    this.check();
    this.closed = true;
  }
}
