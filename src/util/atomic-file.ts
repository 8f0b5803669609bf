// Crash-safe replacement of small files (state, keys, credentials).
// Invariant: after a crash at any point, `path` holds either its old content
// or the complete new content, never a mix, and a completed call survives a
// power loss (the data is fsynced before the rename, the directory after it).
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Writes `data` to `path` atomically and durably, with `mode` (default 0600) even if the file existed. */
export function writeFileAtomic(path: string, data: Buffer | string, mode = 0o600): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const fd = openSync(tmp, 'w', mode);
  try {
    fchmodSync(fd, mode); // the umask or an old leftover must not widen it
    for (let off = 0; off < buf.length;) off += writeSync(fd, buf, off, buf.length - off);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  renameSync(tmp, path);
  const dfd = openSync(dirname(path), 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}
