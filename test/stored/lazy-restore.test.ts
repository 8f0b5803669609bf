// Lazy restore under writes, through the real daemon. A stored volume is
// re-created from a snapshot (restoreFrom) on a store made slow on purpose
// (BLOCKGATE_TEST_FAULTS: block reads +400 ms, block uploads +3 s), so the
// background fill is still far from the end when an NBD client writes new
// data into blocks that are not restored yet: partial blocks, a whole block,
// an unaligned write across two blocks, WRITE_ZEROES, TRIM, FUA. Each write
// is proven to hit unrestored blocks (the restore's on-demand fetch count
// grows by exactly the blocks it touches: that counter only counts blocks
// neither restored nor being fetched). The daemon is SIGKILLed mid-fill,
// right after the last write (before the restore bitmap records its block),
// and restarted: read at once, while the log still holds the writes, every
// written block shows them (a block the bitmap lacks is fetched again as the
// snapshot overlaid with the log); the fill resumes and completes; the
// written ranges hold the new data, every other byte the snapshot's, on the
// NBD export, on the disk and in a snapshot taken afterwards.
// Then three rounds of a fresh lazy restore written by three connections at
// once (WRITE/FUA/WRITE_ZEROES/TRIM/FLUSH, test/harness/crash-writer.ts),
// SIGKILLed mid-fill after a seeded number of operations (BLOCKGATE_TEST_SEED
// replays), restarted: every unit keeps the crash contract over the
// snapshot's contents (test/harness/unit-model.ts), and the fill completes.
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/daemon/admin-api.js';
import { RestoreBitmap } from '../../src/restore/bitmap.js';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { randomFile, requireTools, runOk, sha256, sha256File } from '../harness/nbd-tools.js';
import { fillUnits, readUnits, startWriter, UNIT } from '../harness/crash-writer.js';
import { mulberry32, testSeed } from '../harness/prng.js';
import { UnitModel } from '../harness/unit-model.js';
import { until } from '../harness/until.js';
import { CMD, RawClient } from '../nbd/raw-client.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const BS = 64 * 1024;
const BLOCKS = SIZE / BS;
const FLAG_FUA = 1;
const SLOW_READS = { ops: ['get'], keyPrefix: 'blocks/', action: 'delay', latencyMs: 400 };
/** After the restart block uploads are slow too: the written blocks are read (fetched again) before a new root holds them. */
const SLOW_WRITES = { ops: ['put'], keyPrefix: 'blocks/', action: 'delay', latencyMs: 3000 };

interface RestoreProgress { restoredBlocks: number; totalBlocks: number; fetchedBlocks: number; onDemandFetches: number; complete: boolean; lastError: string | null }

async function progress(d: DaemonHandle): Promise<RestoreProgress> {
  const st = (await adminRequest(d.adminSocket, 'GET', '/v1/status')) as { volumes: Array<{ name: string; details?: { restore: RestoreProgress | null } }> };
  const r = st.volumes.find((v) => v.name === 'lz')?.details?.restore;
  if (!r) throw new Error(`volume lz reports no restore: ${JSON.stringify(st.volumes)}`);
  return r;
}

/** One NBD request over the raw client; throws unless the reply is success. */
async function request(c: RawClient, cookie: bigint, type: number, offset: number, opts: { length?: number; data?: Buffer; flags?: number } = {}): Promise<Buffer | undefined> {
  c.write(RawClient.request(type, { cookie, offset, ...opts }));
  const r = await c.simpleReply(30_000);
  expect(r.cookie).toBe(cookie);
  expect(r.error, `NBD request ${type} at ${offset} failed`).toBe(0);
  return type === CMD.READ ? c.read(opts.length!, 30_000) : undefined;
}

function pattern(seed: number, length: number): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff;
  return b;
}

describe('stored volume: lazy restore under writes', () => {
  let dir: string;
  const daemons: DaemonHandle[] = [];
  beforeAll(() => {
    requireTools('nbdcopy');
    dir = tempDir('bg-lazy-');
  });
  afterAll(async () => {
    for (const d of daemons) await d.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('writes into unrestored blocks survive a SIGKILL mid-fill; the fill resumes and completes; everything else is the snapshot', async () => {
    const store = join(dir, 'store');
    const volume = (disk: string, log: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      store: { url: store },
      volumes: [{ name: 'lz', mode: 'stored', size: '16MiB', disk: join(dir, disk), writeLog: { dir: join(dir, log), size: '64MiB' }, blockSize: '64KiB', uploadInterval: '200ms', ...extra }],
    });
    // The snapshot: random data in every block.
    const d1 = await startDaemon(volume('lz.img', 'lz-log'), { dir });
    daemons.push(d1);
    const src = join(dir, 'src.img');
    randomFile(src, SIZE);
    await runOk('nbdcopy', ['--flush', src, d1.uri('lz')], { timeoutMs: 110_000 });
    const g = JSON.parse((await runOk(process.execPath, [blockgateBin, 'snapshot', 'create', 'lz', '--admin-socket', d1.adminSocket, '--json', '--timeout', '100s'], { timeoutMs: 110_000 })).stdout) as { id: string; state: string };
    expect(g.state).toBe('complete');
    expect(await d1.stop()).toBe(0);

    // A new disk restored lazily from it, on a slow store.
    const cfg = volume('lz2.img', 'lz2-log', { restoreFrom: g.id });
    const d2 = await startDaemon(cfg, { dir, env: { BLOCKGATE_TEST_FAULTS: JSON.stringify({ rules: [SLOW_READS, SLOW_WRITES] }) } });
    daemons.push(d2);
    expect(d2.output()).toMatch(/BLOCKGATE_TEST_FAULTS is set/);
    const expected = readFileSync(src);
    const c = await RawClient.connect({ port: d2.port });
    await c.start();
    await c.go('lz');
    // All in the last quarter of the volume, which the fill (in block order) reaches last.
    const writes: Array<{ what: string; offset: number; length: number; kind: 'write' | 'zero' | 'trim'; flags: number }> = [
      { what: '4 KiB in the middle of block 200', offset: 200 * BS + 8192, length: 4096, kind: 'write', flags: 0 },
      { what: 'all of block 210', offset: 210 * BS, length: BS, kind: 'write', flags: 0 },
      { what: 'unaligned, across blocks 219 and 220', offset: 220 * BS - 6001, length: 12_003, kind: 'write', flags: 0 },
      { what: 'WRITE_ZEROES 16 KiB inside block 230', offset: 230 * BS + 4096, length: 16_384, kind: 'zero', flags: 0 },
      { what: 'TRIM 8 KiB inside block 240', offset: 240 * BS + 32_768, length: 8192, kind: 'trim', flags: 0 },
      { what: 'FUA, 1000 bytes inside block 250', offset: 250 * BS + 100, length: 1000, kind: 'write', flags: FLAG_FUA },
    ];
    let cookie = 1n;
    const write = async (i: number): Promise<void> => {
      const w = writes[i]!;
      const first = Math.floor(w.offset / BS);
      const last = Math.floor((w.offset + w.length - 1) / BS);
      const before = await progress(d2);
      expect(before.complete).toBe(false);
      // The fill goes in block order, 8 at a time: it is nowhere near these blocks yet.
      expect(before.restoredBlocks + 16, `${w.what}: the fill is already close`).toBeLessThan(first);
      const data = w.kind === 'write' ? pattern(i + 1, w.length) : Buffer.alloc(w.length);
      if (w.kind === 'write') await request(c, cookie++, CMD.WRITE, w.offset, { data, flags: w.flags });
      else await request(c, cookie++, w.kind === 'zero' ? CMD.WRITE_ZEROES : CMD.TRIM, w.offset, { length: w.length, flags: w.flags });
      data.copy(expected, w.offset);
      const after = await progress(d2);
      expect(after.onDemandFetches - before.onDemandFetches, `${w.what}: each touched block was fetched on demand (so was not restored, nor being fetched, at the write)`).toBe(last - first + 1);
    };
    for (let i = 0; i < writes.length - 1; i++) await write(i);
    await request(c, cookie++, CMD.FLUSH, 0);
    // Read back at once: the written blocks (new data around snapshot data) over the same connection.
    for (const w of writes.slice(0, -1)) {
      const off = Math.floor(w.offset / BS) * BS;
      const len = (Math.floor((w.offset + w.length - 1) / BS) + 1) * BS - off;
      const got = (await request(c, cookie++, CMD.READ, off, { length: len }))!;
      expect(got.equals(expected.subarray(off, off + len)), `${w.what}: read back before the kill`).toBe(true);
    }
    const mid = await progress(d2);
    expect(mid.complete, 'the fill finished before the kill: the store is not slow enough').toBe(false);
    expect(mid.restoredBlocks).toBeLessThan(BLOCKS);
    // The last write (FUA) and the kill right after it: the restore bitmap (persisted every 2 s and
    // at each root commit) most likely does not have its block yet, so the restarted daemon fetches
    // that block again and must overlay the write log on the snapshot's block.
    await write(writes.length - 1);
    await d2.kill();
    c.destroy();
    const persisted = RestoreBitmap.load(join(dir, 'lz2-log', 'restore.bitmap'), BLOCKS);
    const refetched = [...new Set(writes.flatMap((w) => [Math.floor(w.offset / BS), Math.floor((w.offset + w.length - 1) / BS)]))].filter((b) => !persisted?.has(b));
    process.stdout.write(`lazy restore: killed with ${persisted?.restored ?? 0}/${BLOCKS} blocks in the persisted bitmap; written blocks the restart fetches again: ${refetched.join(', ') || 'none'}\n`);

    // Restart mid-fill (still slow): the restore resumes from its persisted bitmap and completes.
    const d3 = await startDaemon(cfg, { dir, env: { BLOCKGATE_TEST_FAULTS: JSON.stringify({ rules: [SLOW_READS, SLOW_WRITES] }) } });
    daemons.push(d3);
    const resumed = await progress(d3);
    expect(resumed.complete, 'the restore resumed after the restart').toBe(false);
    expect(resumed.totalBlocks).toBe(BLOCKS);
    // At once, while the write log still holds the writes (their upload is slow): blocks the bitmap
    // lacks are fetched again as the snapshot's block overlaid with the log.
    const c3 = await RawClient.connect({ port: d3.port });
    await c3.start();
    await c3.go('lz');
    for (const w of writes) {
      const off = Math.floor(w.offset / BS) * BS;
      const len = (Math.floor((w.offset + w.length - 1) / BS) + 1) * BS - off;
      const got = (await request(c3, cookie++, CMD.READ, off, { length: len }))!;
      expect(got.equals(expected.subarray(off, off + len)), `${w.what}: read back at once after the restart`).toBe(true);
    }
    c3.destroy();
    await until(async () => (await progress(d3)).complete, 120_000, 'the lazy restore to complete after the restart');
    const done = await progress(d3);
    expect(done).toMatchObject({ restoredBlocks: BLOCKS, totalBlocks: BLOCKS, lastError: null });
    expect(done.fetchedBlocks, 'the restarted daemon fetched the rest').toBeGreaterThan(0);
    const want = sha256(expected);
    const out = join(dir, 'out.img');
    await runOk('nbdcopy', [d3.uri('lz'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out), 'the export: written ranges new, everything else the snapshot').toBe(want);
    // A snapshot now holds the same bytes (the uploader ran during the restore and after it).
    const g2 = JSON.parse((await runOk(process.execPath, [blockgateBin, 'snapshot', 'create', 'lz', '--admin-socket', d3.adminSocket, '--json', '--timeout', '100s'], { timeoutMs: 110_000 })).stdout) as { state: string; members: Array<{ snapshot: string }> };
    expect(g2.state).toBe('complete');
    expect(await d3.stop()).toBe(0);
    expect(await sha256File(join(dir, 'lz2.img')), 'the disk').toBe(want);
    const snapImg = join(dir, 'snap.img');
    await runOk(process.execPath, [blockgateBin, 'snapshot', 'download', g2.members[0]!.snapshot, snapImg, '--store', store], { timeoutMs: 110_000 });
    expect(await sha256File(snapImg), 'the snapshot taken after the restore').toBe(want);
  }, 300_000);
  it('concurrent writers during a lazy restore, SIGKILLed mid-fill (3 rounds): the crash contract holds over the snapshot', async () => {
    const seed = testSeed('lazy restore under concurrent writers');
    const store = join(dir, 'store-k');
    const volume = (tag: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      store: { url: store },
      volumes: [{ name: 'lz', mode: 'stored', size: '16MiB', disk: join(dir, `k${tag}.img`), writeLog: { dir: join(dir, `k${tag}-log`), size: '64MiB' }, blockSize: '64KiB', uploadInterval: '200ms', ...extra }],
    });
    // The snapshot: every unit a known version (unit u = version 1_000_000 + u).
    const d1 = await startDaemon(volume('src'), { dir });
    daemons.push(d1);
    const snapshotContents = await fillUnits(d1.uri('lz'), SIZE, 1_000_000);
    const g = JSON.parse((await runOk(process.execPath, [blockgateBin, 'snapshot', 'create', 'lz', '--admin-socket', d1.adminSocket, '--json', '--timeout', '100s'], { timeoutMs: 110_000 })).stdout) as { id: string; state: string };
    expect(g.state).toBe('complete');
    expect(await d1.stop()).toBe(0);

    const env = { BLOCKGATE_TEST_FAULTS: JSON.stringify({ seed, rules: [{ ...SLOW_READS, latencyMs: [100, 300] }, { ...SLOW_WRITES, latencyMs: 1000 }] }) };
    const model = new UnitModel(SIZE / UNIT);
    const rnd = mulberry32(seed);
    let base = 1;
    let acked = 0;
    let onDemand = 0;
    let forced = 0;
    for (let round = 0; round < 3; round++) {
      // A fresh disk, lazily restored from the snapshot, written by three connections at once, killed mid-fill.
      const cfg = volume(String(round), { restoreFrom: g.id });
      const d = await startDaemon(cfg, { dir, env });
      daemons.push(d);
      model.setBaseline(snapshotContents);
      let killedAt: RestoreProgress | undefined;
      const w = startWriter({ uri: d.uri('lz'), seed: seed + round, base, units: SIZE / UNIT, hotUnits: 256, maxUnits: 4, threads: 3, flush: 0.08, zero: 0.06, trim: 0.06, fua: 0.1 });
      try {
        await w.acked(40 + Math.floor(rnd() * 81));
      } finally {
        w.markKill();
        const p = await progress(d).catch((err: Error) => err);
        await d.kill();
        expect(p).not.toBeInstanceOf(Error);
        const pr = p as RestoreProgress;
        expect(pr.complete, `round ${round}: the fill finished before the kill`).toBe(false);
        expect(pr.onDemandFetches, `round ${round}: no write or read had to fetch a block on demand`).toBeGreaterThan(0);
        onDemand += pr.onDemandFetches;
        killedAt = pr;
      }
      const res = await w.finish(model);
      expect(res.failures, `round ${round} (seed ${seed})`).toEqual([]);
      base = res.nextBase;
      acked += res.acked;
      // Restart: the restore resumes; what the volume holds keeps the crash contract over the snapshot.
      const d2 = await startDaemon(cfg, { dir, env });
      daemons.push(d2);
      expect((await progress(d2)).complete, `round ${round}: the restore resumed`).toBe(false);
      const got = await readUnits(d2.uri('lz'), SIZE);
      const { failures, stats } = model.check(got.contents);
      expect(failures.slice(0, 20), `round ${round}: ${failures.length} unit(s) broke the crash contract (seed ${seed})`).toEqual([]);
      expect(stats.units).toBe(SIZE / UNIT);
      forced += stats.forced;
      await until(async () => (await progress(d2)).complete, 120_000, 'the lazy restore to complete after the restart');
      expect((await readUnits(d2.uri('lz'), SIZE)).sha256, `round ${round}: the volume once the fill completed`).toBe(got.sha256);
      expect(await d2.stop()).toBe(0);
      process.stdout.write(`lazy restore under writers, round ${round}: killed at ${killedAt!.restoredBlocks}/${BLOCKS} blocks restored (${killedAt!.onDemandFetches} on demand) after ${res.acked} acknowledged operations (${res.flushesAcked} flushes, ${res.fuaAcked} FUA); ${stats.changed} units changed, ${stats.forced} forced by a durable write\n`);
    }
    expect(acked).toBeGreaterThanOrEqual(3 * 40);
    expect(onDemand).toBeGreaterThan(0);
    expect(forced, 'no unit was pinned by a durable write').toBeGreaterThan(0);
  }, 400_000);
});
