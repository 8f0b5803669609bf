// nbdcopy (libnbd) against a real blockgate daemon: 256 MiB of random data
// in and out with one connection and with four (multi-conn), checked by
// sha256 both on the client side and in the volume's file on disk; and a
// sparse-aware copy of a mostly-zero image that leaves the volume's file
// sparse.
import { mkdirSync, rmSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { allocatedBytes, randomFile, requireTools, runOk, sha256File, nbdshOk, waitFor, expectDaemonAlive } from '../harness/nbd-tools.js';

const MiB = 1024 * 1024;
const SIZE = 256 * MiB;

let d: DaemonHandle;
let dir: string;
let src: string;
let srcHash: string;

beforeAll(async () => {
  requireTools('nbdcopy', 'nbdinfo', 'nbdsh');
  dir = tempDir('blockgate-nbdcopy-');
  mkdirSync(join(dir, 'disks'));
  src = join(dir, 'random.img');
  srcHash = randomFile(src, SIZE);
  d = await startDaemon({
    volumes: [
      { name: 'single', mode: 'raw', size: '256MiB', disk: join(dir, 'disks', 'single.img') },
      { name: 'multi', mode: 'raw', size: '256MiB', disk: join(dir, 'disks', 'multi.img') },
      { name: 'sparse', mode: 'raw', size: '256MiB', disk: join(dir, 'disks', 'sparse.img') },
    ],
  }, { dir });
});

afterEach(() => expectDaemonAlive(d));

afterAll(async () => {
  if (d) expect(await d.stop()).toBe(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Connections that entered transmission on `exportName` so far, from the daemon's log. */
function transmissions(exportName: string): number {
  return d.output().split('\n').filter((l) => l.includes('"msg":"transmission started"') && l.includes(`"export":"${exportName}"`)).length;
}

describe('nbdcopy', () => {
  it('256 MiB of random data in and out over one connection (sha256 equal, also on disk)', async () => {
    const before = transmissions('single');
    await runOk('nbdcopy', ['--connections=1', '--flush', src, d.uri('single')], { timeoutMs: 110_000 });
    const out = join(dir, 'single-out.img');
    await runOk('nbdcopy', ['--connections=1', d.uri('single'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out)).toBe(srcHash);
    expect(await sha256File(join(dir, 'disks', 'single.img'))).toBe(srcHash);
    await waitFor(() => transmissions('single') - before >= 2, 5000);
    expect(transmissions('single') - before).toBe(2);
    rmSync(out);
  });

  it('256 MiB in and out with --connections=4 (multi-conn): four connections each way, data intact', async () => {
    const before = transmissions('multi');
    await runOk('nbdcopy', ['--connections=4', '--threads=4', '--requests=16', '--flush', src, d.uri('multi')], { timeoutMs: 110_000 });
    // nbdcopy caps connections at --threads (default: number of cores), hence --threads=4.
    await waitFor(() => transmissions('multi') - before >= 4, 5000);
    expect(transmissions('multi') - before).toBe(4);
    expect(await sha256File(join(dir, 'disks', 'multi.img'))).toBe(srcHash);
    const out = join(dir, 'multi-out.img');
    await runOk('nbdcopy', ['--connections=4', '--threads=4', '--requests=16', d.uri('multi'), out], { timeoutMs: 110_000 });
    // nbdcopy opens extra connections only because the server advertises multi-conn.
    await waitFor(() => transmissions('multi') - before >= 8, 5000);
    expect(transmissions('multi') - before).toBe(8);
    expect(await sha256File(out)).toBe(srcHash);
    rmSync(out);
  });

  it('NBD → NBD copy between two exports of the same daemon', async () => {
    // Fill 'sparse' later; here copy 'single' (random) onto 'multi' after scribbling on multi.
    await nbdshOk(`h.pwrite(b'\\x00' * 4096 + b'\\xee' * 4096, 100 * 4096)`, { uri: d.uri('multi') });
    await runOk('nbdcopy', ['--flush', d.uri('single'), d.uri('multi')], { timeoutMs: 110_000 });
    expect(await sha256File(join(dir, 'disks', 'multi.img'))).toBe(srcHash);
  });

  it('sparse-aware copy of a mostly-zero image: the volume file stays sparse, data round-trips', async () => {
    const img = join(dir, 'mostly-zero.img');
    const fd = openSync(img, 'w');
    const pieces: Array<[number, Buffer]> = [[0, randomBytes(MiB)], [100 * MiB + 12345, randomBytes(3 * MiB)], [SIZE - 64 * 1024, randomBytes(64 * 1024)]];
    try {
      ftruncateSync(fd, SIZE);
      for (const [off, buf] of pieces) writeSync(fd, buf, 0, buf.length, off);
    } finally {
      closeSync(fd);
    }
    const hash = await sha256File(img);
    // Pre-dirty the target so copying zeros has to do something (trim/zero, not skip).
    await runOk('nbdcopy', ['--flush', src, d.uri('sparse')], { timeoutMs: 110_000 });
    expect(await allocatedBytes(join(dir, 'disks', 'sparse.img'))).toBeGreaterThanOrEqual(SIZE - MiB);

    await runOk('nbdcopy', ['--flush', img, d.uri('sparse')], { timeoutMs: 110_000 });
    const disk = join(dir, 'disks', 'sparse.img');
    expect(await sha256File(disk)).toBe(hash);
    // ~4.1 MiB of data (plus block rounding): far below the 256 MiB apparent size.
    const allocated = await allocatedBytes(disk);
    expect(allocated).toBeGreaterThanOrEqual(4 * MiB);
    expect(allocated).toBeLessThan(16 * MiB);
    const du = await runOk('du', ['-k', disk]);
    expect(Number(du.stdout.split(/\s/)[0])).toBeLessThan(16 * 1024);

    // The export's map agrees: mostly hole,zero.
    const totals = JSON.parse((await runOk('nbdinfo', ['--map', '--totals', '--json', d.uri('sparse')])).stdout) as Array<{ size: number; type: number }>;
    const byType = Object.fromEntries(totals.map((t) => [t.type, t.size]));
    expect(byType[3]).toBeGreaterThan(SIZE - 16 * MiB);

    // And back out: sparse on the client side too, identical content.
    const out = join(dir, 'sparse-out.img');
    await runOk('nbdcopy', [d.uri('sparse'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out)).toBe(hash);
    expect(await allocatedBytes(out)).toBeLessThan(16 * MiB);
  });
});
