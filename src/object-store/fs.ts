// FsObjectStore: the embedded default ObjectStore, keeping objects as files
// under a root directory on a local filesystem.
//
// Layout (version 1):
//   ROOT/objects/  one file per object; key "a/b/c" -> objects/a!/b!/c
//                  (every non-final segment is a directory named SEG + "!",
//                  so key "a" and key "a/b" can both exist); in a segment,
//                  '%' and '!' are percent-encoded, nothing else is.
//   ROOT/tmp/      files being written: "<pid>.<random>.<kind>"; those of
//                  dead processes are removed when a store is opened.
//   ROOT/locks/    per-key lock files (see fs-lock.ts).
// Object file = 20-byte header ("BGO1" + 16-byte MD5 of the body) + body,
// so head/list read the ETag without reading the body.
//
// ETag: lowercase MD5 hex of the body, without quotes (the same value S3
// returns, quotes stripped, for a single-part PUT; S3ObjectStore strips them
// too, so both stores agree).
//
// Invariants:
//   - put is atomic and durable: the new file is written and fsynced under
//     tmp/, then renamed (or, for ifNoneMatch, link()ed) into place and the
//     directory fsynced; readers hold an open fd, so they see the whole old
//     or the whole new object, never a mix;
//   - every mutation of a key (put of any kind, delete) runs under that key's
//     lock, so ifMatch/ifNoneMatch checks and the commit are one atomic step
//     between callers in this process and in other processes on this host;
//     ifNoneMatch additionally commits with link(), which fails with EEXIST
//     if the key exists;
//   - list walks directories in UTF-8 byte order of the keys they hold, so
//     keys come out sorted without collecting the whole tree.
// Keys follow keys.ts; a segment longer than 255 bytes once encoded is
// refused with INVALID_ARGUMENT (filesystem name limit).
import { createHash, randomBytes } from 'node:crypto';
import { promises as fsp, constants as fsc } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import { BlockgateError, ErrorCodes, isBlockgateError } from '../errors.js';
import { KeyLocks, processAlive } from './fs-lock.js';
import { compareKeys, throwIfAborted, validateKey, validatePrefix, validateRange } from './keys.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

const MAGIC = Buffer.from('BGO1', 'latin1');
const HEADER_BYTES = 20;
const NAME_MAX = 255;
const LIST_BATCH = 32;

export interface FsObjectStoreOptions {
  /** fsync files and directories on put/delete (default true). Only tests should turn it off. */
  durable?: boolean;
  /** Longest wait for a key lock held by another caller (ms, default 60 000). */
  lockTimeoutMs?: number;
}

export class FsObjectStore implements ObjectStore {
  readonly location: string;
  readonly root: string;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly locks: KeyLocks;
  private readonly durable: boolean;
  private readonly ready: Promise<void>;
  private closed = false;

  constructor(root: string, options: FsObjectStoreOptions = {}) {
    this.root = resolve(root);
    this.location = 'file://' + this.root;
    this.objectsDir = join(this.root, 'objects');
    this.tmpDir = join(this.root, 'tmp');
    this.durable = options.durable ?? true;
    this.locks = new KeyLocks(join(this.root, 'locks'), this.tmpDir, { timeoutMs: options.lockTimeoutMs ?? 60_000 });
    this.ready = this.init();
    this.ready.catch(() => undefined); // reported by the first operation
  }

  /** Open (creating if needed) a store at `root`, failing early if it is unusable. */
  static async open(root: string, options: FsObjectStoreOptions = {}): Promise<FsObjectStore> {
    const store = new FsObjectStore(root, options);
    await store.ready;
    return store;
  }

  private async init(): Promise<void> {
    try {
      for (const d of [this.objectsDir, this.tmpDir, join(this.root, 'locks')]) await fsp.mkdir(d, { recursive: true });
      await this.removeDeadTemps();
    } catch (err) {
      throw mapFsError(err, `open file store ${this.root}`);
    }
  }

  private async removeDeadTemps(): Promise<void> {
    const now = Date.now();
    for (const name of await fsp.readdir(this.tmpDir)) {
      const pid = Number(name.split('.')[0]);
      if (!Number.isInteger(pid) || pid <= 0 || processAlive(pid)) continue;
      const p = join(this.tmpDir, name);
      const st = await fsp.stat(p).catch(() => undefined);
      if (st && now - st.mtimeMs > 60_000) await fsp.unlink(p).catch(() => undefined);
    }
  }

  private async begin(signal: AbortSignal | undefined, what: string): Promise<void> {
    if (this.closed) throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `${what}: store ${this.location} is closed`);
    throwIfAborted(signal, what);
    await this.ready;
  }

  // --- paths --------------------------------------------------------------

  private pathOf(key: string): string {
    const segs = key.split('/');
    const parts = segs.map((s, i) => encodeSegment(s, key) + (i < segs.length - 1 ? '!' : ''));
    return join(this.objectsDir, ...parts);
  }

  private lockName(key: string): string {
    return createHash('sha256').update(key).digest('hex').slice(0, 40);
  }

  // --- read ---------------------------------------------------------------

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    validateKey(key);
    validateRange(options.range);
    const what = `get ${key}`;
    await this.begin(options.signal, what);
    const fh = await this.openObject(key, what);
    try {
      const st = await fh.stat();
      const etag = await readHeader(fh, st.size, key);
      const size = st.size - HEADER_BYTES;
      const start = Math.min(options.range?.offset ?? 0, size);
      const length = Math.min(options.range?.length ?? size, size - start);
      const body = Buffer.allocUnsafe(length);
      await readFully(fh, body, HEADER_BYTES + start, key);
      throwIfAborted(options.signal, what);
      return { body, etag, size };
    } catch (err) {
      throw mapFsError(err, what);
    } finally {
      await fh.close();
    }
  }

  async head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    validateKey(key);
    const what = `head ${key}`;
    await this.begin(options.signal, what);
    const info = await this.info(key, this.pathOf(key));
    if (!info) throw notFound(key);
    return info;
  }

  private async info(key: string, path: string): Promise<ObjectInfo | undefined> {
    let fh: FileHandle;
    try {
      fh = await fsp.open(path, fsc.O_RDONLY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw mapFsError(err, `head ${key}`);
    }
    try {
      const st = await fh.stat();
      const etag = await readHeader(fh, st.size, key);
      return { key, size: st.size - HEADER_BYTES, etag, lastModified: st.mtime };
    } catch (err) {
      throw mapFsError(err, `head ${key}`);
    } finally {
      await fh.close();
    }
  }

  private async openObject(key: string, what: string): Promise<FileHandle> {
    try {
      return await fsp.open(this.pathOf(key), fsc.O_RDONLY);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw notFound(key);
      throw mapFsError(err, what);
    }
  }

  // --- write --------------------------------------------------------------

  async put(key: string, body: Buffer, options: PutOptions = {}): Promise<{ etag: string }> {
    validateKey(key);
    checkConditions(options);
    const what = `put ${key}`;
    await this.begin(options.signal, what);
    const path = this.pathOf(key);
    const md5 = createHash('md5').update(body).digest();
    const etag = md5.toString('hex');
    const tmp = join(this.tmpDir, `${process.pid}.${randomBytes(8).toString('hex')}.obj`);
    try {
      await this.writeTemp(tmp, Buffer.concat([MAGIC, md5]), body);
      await this.locks.withLock(
        this.lockName(key),
        async () => {
          throwIfAborted(options.signal, what);
          if (options.ifMatch !== undefined) {
            const cur = await this.info(key, path);
            if (!cur || cur.etag !== normalizeEtag(options.ifMatch)) {
              throw preconditionFailed(key, `current ETag ${cur ? cur.etag : '(no object)'} != ${options.ifMatch}`);
            }
          }
          await this.commit(tmp, path, options.ifNoneMatch === '*', key);
        },
        options.signal,
      );
      return { etag };
    } catch (err) {
      throw mapFsError(err, what);
    } finally {
      await fsp.unlink(tmp).catch(() => undefined);
    }
  }

  private async writeTemp(tmp: string, header: Buffer, body: Buffer): Promise<void> {
    const fh = await fsp.open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL, 0o644);
    try {
      let bufs = [header, body];
      while (bufs.length > 0) {
        const { bytesWritten } = await fh.writev(bufs);
        bufs = advance(bufs, bytesWritten);
      }
      if (this.durable) await fh.datasync();
    } finally {
      await fh.close();
    }
  }

  /** Move the finished temp file to `path`; exclusive => fail if it exists. */
  private async commit(tmp: string, path: string, exclusive: boolean, key: string): Promise<void> {
    const dir = dirname(path);
    for (let attempt = 0; ; attempt++) {
      try {
        if (exclusive) await fsp.link(tmp, path);
        else await fsp.rename(tmp, path);
        break;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (exclusive && code === 'EEXIST') throw preconditionFailed(key, 'object exists');
        // Parent missing (first key under it, or removed by a concurrent delete's cleanup).
        if ((code === 'ENOENT' || code === 'ENOTDIR') && attempt < 10) {
          await this.mkdirs(dir);
          continue;
        }
        throw err;
      }
    }
    if (this.durable) await fsyncDir(dir);
  }

  private async mkdirs(dir: string): Promise<void> {
    const first = await fsp.mkdir(dir, { recursive: true });
    if (!this.durable || first === undefined) return;
    // fsync every directory whose entry list changed: parent of the first new one, down to dir.
    let d = dir;
    const chain: string[] = [];
    while (d.length >= first.length) {
      chain.push(dirname(d));
      d = dirname(d);
    }
    for (const p of chain.reverse()) await fsyncDir(p).catch(() => undefined);
  }

  async delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    validateKey(key);
    const what = `delete ${key}`;
    await this.begin(options.signal, what);
    const path = this.pathOf(key);
    try {
      await this.locks.withLock(
        this.lockName(key),
        async () => {
          try {
            await fsp.unlink(path);
          } catch (err) {
            const code = (err as NodeJS.ErrnoException).code;
            if (code === 'ENOENT' || code === 'ENOTDIR') return;
            throw err;
          }
          if (this.durable) await fsyncDir(dirname(path));
        },
        options.signal,
      );
    } catch (err) {
      throw mapFsError(err, what);
    }
    await this.removeEmptyParents(dirname(path));
  }

  /** Best effort: drop now-empty directories up to objects/ (rmdir fails if not empty). */
  private async removeEmptyParents(dir: string): Promise<void> {
    while (dir.length > this.objectsDir.length && dir.startsWith(this.objectsDir + sep)) {
      try {
        await fsp.rmdir(dir);
      } catch {
        return;
      }
      dir = dirname(dir);
    }
  }

  // --- list ---------------------------------------------------------------

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    validatePrefix(prefix);
    const what = `list ${prefix}`;
    await this.begin(options.signal, what);
    // Start at the deepest directory every matching key lies under.
    const lastSlash = prefix.lastIndexOf('/');
    const base = lastSlash < 0 ? '' : prefix.slice(0, lastSlash + 1);
    let dir = this.objectsDir;
    if (base !== '') {
      const segs = base.slice(0, -1).split('/');
      if (segs.some((s) => s === '' || s === '.' || s === '..')) return; // no valid key can match
      dir = join(this.objectsDir, ...segs.map((s) => encodeSegment(s, prefix) + '!'));
    }
    yield* this.walk(dir, base, prefix, options.startAfter, options.signal);
  }

  private async *walk(
    dir: string,
    keyPrefix: string,
    prefix: string,
    startAfter: string | undefined,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<ObjectInfo> {
    throwIfAborted(signal, `list ${prefix}`);
    let names: string[];
    try {
      names = await fsp.readdir(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return;
      throw mapFsError(err, `list ${prefix}`);
    }
    const entries: Array<{ name: string; key: string; isDir: boolean; sortKey: string }> = [];
    for (const name of names) {
      const bang = name.indexOf('!');
      if (bang === name.length - 1) {
        const key = keyPrefix + decodeSegment(name.slice(0, -1)) + '/';
        entries.push({ name, key, isDir: true, sortKey: key });
      } else if (bang < 0) {
        const key = keyPrefix + decodeSegment(name);
        entries.push({ name, key, isDir: false, sortKey: key });
      }
      // other names are not ours: ignore
    }
    entries.sort((a, b) => compareKeys(a.sortKey, b.sortKey));
    let batch: Array<{ name: string; key: string }> = [];
    const flush = async function* (this: FsObjectStore): AsyncGenerator<ObjectInfo> {
      const infos = await Promise.all(batch.map((e) => this.info(e.key, join(dir, e.name))));
      batch = [];
      for (const i of infos) if (i) yield i; // vanished meanwhile: skip
    }.bind(this);
    for (const e of entries) {
      if (e.isDir) {
        const p = e.key; // "…/seg/"
        if (!(p.startsWith(prefix) || prefix.startsWith(p))) continue;
        if (startAfter !== undefined && !startAfter.startsWith(p) && compareKeys(startAfter, p) > 0) continue;
        yield* flush();
        yield* this.walk(join(dir, e.name), p, prefix, startAfter, signal);
      } else {
        if (!e.key.startsWith(prefix)) continue;
        if (startAfter !== undefined && compareKeys(e.key, startAfter) <= 0) continue;
        batch.push(e);
        if (batch.length >= LIST_BATCH) yield* flush();
      }
    }
    yield* flush();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.ready.catch(() => undefined);
  }
}

// --- helpers ----------------------------------------------------------------

export function normalizeEtag(etag: string): string {
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '').toLowerCase();
}

export function checkConditions(options: PutOptions): void {
  if (options.ifNoneMatch !== undefined && options.ifNoneMatch !== '*') {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `ifNoneMatch must be '*', got ${JSON.stringify(options.ifNoneMatch)}`);
  }
  if (options.ifNoneMatch !== undefined && options.ifMatch !== undefined) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'ifNoneMatch and ifMatch cannot be combined');
  }
  if (options.ifMatch !== undefined && (typeof options.ifMatch !== 'string' || normalizeEtag(options.ifMatch) === '')) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'ifMatch must be a non-empty ETag');
  }
}

function encodeSegment(seg: string, key: string): string {
  const enc = seg.replace(/[%!]/g, (c) => (c === '%' ? '%25' : '%21'));
  if (Buffer.byteLength(enc, 'utf8') + 1 > NAME_MAX) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `invalid object key ${JSON.stringify(key)}: segment longer than ${NAME_MAX - 1} bytes (file store limit)`, {
      details: { key },
    });
  }
  return enc;
}

function decodeSegment(name: string): string {
  return name.replace(/%(25|21)/g, (_m, h: string) => (h === '25' ? '%' : '!'));
}

async function readHeader(fh: FileHandle, fileSize: number, key: string): Promise<string> {
  const header = Buffer.allocUnsafe(HEADER_BYTES);
  if (fileSize < HEADER_BYTES) throw corrupt(key, 'file shorter than its header');
  await readFully(fh, header, 0, key);
  if (!header.subarray(0, 4).equals(MAGIC)) throw corrupt(key, 'bad magic');
  return header.subarray(4).toString('hex');
}

async function readFully(fh: FileHandle, buf: Buffer, position: number, key: string): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw corrupt(key, 'file truncated');
    done += bytesRead;
  }
}

function advance(bufs: Buffer[], n: number): Buffer[] {
  const out: Buffer[] = [];
  for (const b of bufs) {
    if (n >= b.length) {
      n -= b.length;
      continue;
    }
    out.push(n > 0 ? b.subarray(n) : b);
    n = 0;
  }
  return out;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await fsp.open(dir, fsc.O_RDONLY | fsc.O_DIRECTORY);
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function notFound(key: string): BlockgateError {
  return new BlockgateError(ErrorCodes.OBJECT_NOT_FOUND, `object ${key} not found`, { details: { key } });
}

function preconditionFailed(key: string, why: string): BlockgateError {
  return new BlockgateError(ErrorCodes.PRECONDITION_FAILED, `conditional put of ${key} failed: ${why}`, { details: { key } });
}

function corrupt(key: string, why: string): BlockgateError {
  return new BlockgateError(ErrorCodes.IO, `object file for ${key} is corrupt: ${why}`, { details: { key } });
}

/** Map a Node fs error to a BlockgateError (BlockgateErrors pass through). */
export function mapFsError(err: unknown, what: string): BlockgateError {
  if (isBlockgateError(err)) return err;
  const e = err as NodeJS.ErrnoException;
  const msg = `${what}: ${e?.message ?? String(err)}`;
  switch (e?.code) {
    case 'ENOSPC':
    case 'EDQUOT':
      return new BlockgateError(ErrorCodes.NO_SPACE, msg, { cause: err, retryable: false });
    case 'EACCES':
    case 'EPERM':
    case 'EROFS':
      return new BlockgateError(ErrorCodes.STORE_ACCESS_DENIED, msg, { cause: err, retryable: false });
    case 'ENAMETOOLONG':
      return new BlockgateError(ErrorCodes.INVALID_ARGUMENT, msg, { cause: err, retryable: false });
    case 'EMFILE':
    case 'ENFILE':
    case 'EAGAIN':
    case 'EBUSY':
    case 'EINTR':
      return new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, msg, { cause: err, retryable: true });
    default:
      return new BlockgateError(ErrorCodes.IO, msg, { cause: err, retryable: false });
  }
}
