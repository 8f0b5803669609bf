// nbdcopy (libnbd) against a real blockgate daemon serving every volume as a
// raw, a stored and a cached export (test/nbd/modes.ts), each case per mode:
// 64 MiB of random data in and out with one connection and with four
// (multi-conn), checked by sha256 on the client side and in the volume's own
// durable copy (disk file, or the store's live root for cached); and a
// sparse-aware copy of a mostly-zero image that keeps the volume sparse.
import { rmSync, openSync, writeSync, closeSync, ftruncateSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { allocatedBytes, randomFile, requireTools, runOk, sha256File, nbdshOk, waitFor, expectDaemonAlive } from '../harness/nbd-tools.js';
import { MODES, MODE_CAPS, exportName, startModesDaemon, type Mode, type ModesDaemon } from './modes.js';

const MiB = 1024 * 1024;
const SIZE = 64 * MiB;

let m: ModesDaemon;
let src: string;
let srcHash: string;

beforeAll(async () => {
  requireTools('nbdcopy', 'nbdinfo', 'nbdsh');
  m = await startModesDaemon('blockgate-nbdcopy-', [
    { name: 'single', size: '64MiB' },
    { name: 'multi', size: '64MiB' },
    { name: 'sparse', size: '64MiB' },
  ]);
  src = join(m.dir, 'random.img');
  srcHash = randomFile(src, SIZE);
});

afterEach(() => expectDaemonAlive(m.d));

afterAll(async () => {
  if (m) expect(await m.close()).toBe(0);
});

/** Connections that entered transmission on `name` so far, from the daemon's log. */
function transmissions(name: string): number {
  return m.d.output().split('\n').filter((l) => l.includes('"msg":"transmission started"') && l.includes(`"export":"${name}"`)).length;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

describe.each(MODES)('nbdcopy: %s export', (mode: Mode) => {
  const uri = (base: string): string => m.uri(mode, base);

  it('64 MiB of random data in and out over one connection (sha256 equal, also in the durable copy)', async () => {
    const before = transmissions(exportName(mode, 'single'));
    await runOk('nbdcopy', ['--connections=1', '--flush', src, uri('single')], { timeoutMs: 110_000 });
    const out = join(m.dir, `single-out-${mode}.img`);
    await runOk('nbdcopy', ['--connections=1', uri('single'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out)).toBe(srcHash);
    expect(sha256(await m.content(mode, 'single'))).toBe(srcHash);
    await waitFor(() => transmissions(exportName(mode, 'single')) - before >= 2, 5000);
    expect(transmissions(exportName(mode, 'single')) - before).toBe(2);
    rmSync(out);
  });

  it('64 MiB in and out with --connections=4 (multi-conn): four connections each way, data intact', async () => {
    const name = exportName(mode, 'multi');
    const before = transmissions(name);
    await runOk('nbdcopy', ['--connections=4', '--threads=4', '--requests=16', '--flush', src, uri('multi')], { timeoutMs: 110_000 });
    // nbdcopy caps connections at --threads (default: number of cores), hence --threads=4.
    await waitFor(() => transmissions(name) - before >= 4, 5000);
    expect(transmissions(name) - before).toBe(4);
    expect(sha256(await m.content(mode, 'multi'))).toBe(srcHash);
    const out = join(m.dir, `multi-out-${mode}.img`);
    await runOk('nbdcopy', ['--connections=4', '--threads=4', '--requests=16', uri('multi'), out], { timeoutMs: 110_000 });
    // nbdcopy opens extra connections only because the server advertises multi-conn.
    await waitFor(() => transmissions(name) - before >= 8, 5000);
    expect(transmissions(name) - before).toBe(8);
    expect(await sha256File(out)).toBe(srcHash);
    rmSync(out);
  });

  it('NBD → NBD copy between two exports of the same daemon', async () => {
    // Copy 'single' (random) onto 'multi' after scribbling on multi.
    await nbdshOk(`h.pwrite(b'\\x00' * 4096 + b'\\xee' * 4096, 100 * 4096)`, { uri: uri('multi') });
    await runOk('nbdcopy', ['--flush', uri('single'), uri('multi')], { timeoutMs: 110_000 });
    expect(sha256(await m.content(mode, 'multi'))).toBe(srcHash);
  });

  it('sparse-aware copy of a mostly-zero image: the volume stays sparse, data round-trips', async () => {
    const img = join(m.dir, `mostly-zero-${mode}.img`);
    const fd = openSync(img, 'w');
    const pieces: Array<[number, Buffer]> = [[0, randomBytes(MiB)], [30 * MiB + 12345, randomBytes(3 * MiB)], [SIZE - 64 * 1024, randomBytes(64 * 1024)]];
    try {
      ftruncateSync(fd, SIZE);
      for (const [off, buf] of pieces) writeSync(fd, buf, 0, buf.length, off);
    } finally {
      closeSync(fd);
    }
    const hash = await sha256File(img);
    // Pre-dirty the target so copying zeros has to do something (trim/zero, not skip).
    await runOk('nbdcopy', ['--flush', src, uri('sparse')], { timeoutMs: 110_000 });
    if (mode !== 'cached') expect(await allocatedBytes(m.diskPath(mode, 'sparse'))).toBeGreaterThanOrEqual(SIZE - MiB);

    await runOk('nbdcopy', ['--flush', img, uri('sparse')], { timeoutMs: 110_000 });
    expect(sha256(await m.content(mode, 'sparse'))).toBe(hash);
    if (mode !== 'cached') {
      // ~4.1 MiB of data (plus block rounding): far below the apparent size.
      const disk = m.diskPath(mode, 'sparse');
      const allocated = await allocatedBytes(disk);
      expect(allocated).toBeGreaterThanOrEqual(4 * MiB);
      expect(allocated).toBeLessThan(16 * MiB);
      const du = await runOk('du', ['-k', disk]);
      expect(Number(du.stdout.split(/\s/)[0])).toBeLessThan(16 * 1024);
    }

    // The export's map agrees: mostly hole,zero (content() above waited for a
    // cached volume to drain: its zeroed blocks are absent from the live root).
    // A stored export has no extents: one data extent (modes.ts: MODE_CAPS).
    const totals = JSON.parse((await runOk('nbdinfo', ['--map', '--totals', '--json', uri('sparse')])).stdout) as Array<{ size: number; type: number }>;
    const byType = Object.fromEntries(totals.map((t) => [t.type, t.size]));
    if (MODE_CAPS[mode].extents) expect(byType[3]).toBeGreaterThan(SIZE - 16 * MiB);
    else expect(byType).toEqual({ 0: SIZE });

    // And back out: sparse on the client side too, identical content.
    const out = join(m.dir, `sparse-out-${mode}.img`);
    await runOk('nbdcopy', [uri('sparse'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out)).toBe(hash);
    expect(await allocatedBytes(out)).toBeLessThan(16 * MiB);
    rmSync(out);
    rmSync(img);
  });
});
