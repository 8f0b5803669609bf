// Incremental cost: upload IMAGE as a base snapshot, overwrite PERCENT% of its
// non-zero blocks with new random data (in a copy), upload the copy with the
// base as parent through a counting wrapper, and report bytes put vs bytes
// changed; then restore the copy's snapshot incrementally over the original
// and report blocks written. Usage: node snapshot-incremental.mjs IMAGE STORE_URL [PERCENT]
// (S3 endpoint/credentials from AWS_* env.) Prints one JSON line.
import { copyFileSync, openSync, readSync, writeSync, closeSync, statSync } from 'node:fs';
import { randomBytes, createHash } from 'node:crypto';
const { openObjectStore } = await import('../dist/object-store/open.js');
const { CountingObjectStore } = await import('../dist/object-store/counting.js');
const { SnapshotStore, uploadImage, downloadSnapshot } = await import('../dist/snapshots/index.js');

const [image, url, pct = '1'] = process.argv.slice(2);
const BS = 512 * 1024;
const inner = await openObjectStore(url);
const counting = new CountingObjectStore(inner);
const snaps = new SnapshotStore(counting);
const vol = `inc-${Date.now().toString(36)}`;
const base = await uploadImage(snaps, image, { volume: vol });

const copy = `${image}.changed`;
copyFileSync(image, copy);
const n = Math.ceil(statSync(image).size / BS);
const fd = openSync(copy, 'r+');
const nonZero = [];
const buf = Buffer.alloc(BS);
for (let i = 0; i < n; i++) { const got = readSync(fd, buf, 0, BS, i * BS); if (buf.subarray(0, got).some((b) => b !== 0)) nonZero.push(i); }
const want = Math.max(1, Math.round((n * Number(pct)) / 100));
const picked = new Set();
let seed = 12345;
while (picked.size < Math.min(want, nonZero.length)) { seed = (seed * 1103515245 + 12345) >>> 0; picked.add(nonZero[seed % nonZero.length]); }
for (const i of picked) writeSync(fd, randomBytes(BS), 0, BS, i * BS);
closeSync(fd);

counting.reset();
const t0 = Date.now();
const child = await uploadImage(snaps, copy, { parent: base.root.id });
const upMs = Date.now() - t0;
const c = counting.snapshot();
const changedBytes = picked.size * BS;
const sent = c.put.bytesOut;
// The restore target holds the base image; only the changed blocks should be written.
copyFileSync(image, image + '.restore-target');
counting.reset();
const t2 = Date.now();
const inc = await downloadSnapshot(snaps, child.root.id, image + '.restore-target', { incremental: true });
const incMs = Date.now() - t2;
const fetched = counting.snapshot().get.bytesIn;
function fileHash(p) {
  const f = openSync(p, 'r'); const h = createHash('sha256'); const b = Buffer.allocUnsafe(1 << 22);
  for (let o = 0, got; (got = readSync(f, b, 0, b.length, o)) > 0; o += got) h.update(b.subarray(0, got));
  closeSync(f); return h.digest('hex');
}
const exact = fileHash(copy) === fileHash(image + '.restore-target');
console.log(JSON.stringify({
  blocks: n, changedBlocks: picked.size, changedBytes, putBytes: sent, putRequests: c.put.requests, headRequests: c.head.requests,
  ratio: +(sent / changedBytes).toFixed(4), incrementalUploadMs: upMs, root: child.root.stats,
  incrementalRestore: { writtenBlocks: inc.writtenBlocks, fetchedBytes: fetched, ms: incMs, bitExact: exact },
}));
await inner.close();
