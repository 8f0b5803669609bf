// Stored volume, SIGKILL loop (test/harness/kill-loop.ts): three NBD
// connections (python3-libnbd) overwrite the same 4 KiB units with new
// versions, with WRITE_ZEROES, TRIM, FUA and FLUSH in the mix, while the
// uploader shadows the log into the store; the daemon is SIGKILLed after a
// seeded number of acknowledged operations. After every restart each unit
// must hold its last durable version or a later acknowledged/begun one
// (test/harness/unit-model.ts). The store is slowed and fails now and then
// (BLOCKGATE_TEST_FAULTS) while the loop runs. After the last restart a
// snapshot taken through the daemon, downloaded offline, equals the disk.
// Seed: BLOCKGATE_TEST_SEED replays a run; cycles: BLOCKGATE_KILL_CYCLES
// (default 8; bench/stored-kill-loop.sh runs a long one).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { killLoop } from '../harness/kill-loop.js';
import { requireTools, runOk, sha256File } from '../harness/nbd-tools.js';
import { testSeed } from '../harness/prng.js';

const CYCLES = Number(process.env.BLOCKGATE_KILL_CYCLES ?? 8);
const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

describe('stored volume: SIGKILL loop', () => {
  let dir: string;
  const daemons: DaemonHandle[] = [];
  beforeAll(() => {
    requireTools('nbdsh');
    dir = tempDir('bg-stored-kill-');
  });
  afterAll(async () => {
    for (const d of daemons) await d.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it(`every durable write survives ${CYCLES} SIGKILLs, later ones read old or new; the last snapshot equals the disk`, async () => {
    const seed = testSeed('stored kill loop');
    const disk = join(dir, 'k.img');
    const config = {
      store: { url: join(dir, 'store') },
      volumes: [{ name: 'k', mode: 'stored', size: '16MiB', disk, writeLog: { dir: join(dir, 'k-log'), size: '128MiB' }, blockSize: '64KiB', uploadInterval: '200ms' }],
    };
    // While the loop runs the store is slow and fails now and then, so kills also land mid-upload
    // and after ambiguous puts (landed, reported failed); the last start is fault-free. Failures
    // are counted (the 3rd put, every Nth call), not random, so every run has some. The fs store
    // has no per-request retry: a failure costs an upload attempt and a backoff; the log absorbs it.
    let starts = 0;
    const faults = (n: number): string => JSON.stringify({ seed: seed + n, rules: [
      { ops: ['put'], action: 'delay', latencyMs: [0, 40] },
      { ops: ['put'], nth: 3, action: 'fail-after' },
      { ops: ['put'], every: 61, action: 'fail-after' },
      { ops: ['put', 'get'], every: 53, action: 'fail' },
    ] });
    const start = async (): Promise<DaemonHandle> => {
      const n = starts++;
      const d = await startDaemon(config, { dir, timeoutMs: 60_000, ...(n < CYCLES ? { env: { BLOCKGATE_TEST_FAULTS: faults(n) } } : {}) });
      daemons.push(d);
      return d;
    };
    const { daemon, sha256, totals } = await killLoop({
      start, exportName: 'k', size: SIZE, cycles: CYCLES, seed, killAfter: [100, 700],
      writer: { threads: 3, hotUnits: 256, maxUnits: 4, flush: 0.08, zero: 0.06, trim: 0.06, fua: 0.1 },
      log: (l) => process.stdout.write(`stored kill loop: ${l}\n`),
    });
    // Every cycle and the final start read and checked every unit.
    expect(totals.checks).toBe(CYCLES + 1);
    expect(totals.units).toBe((CYCLES + 1) * (SIZE / 4096));
    // The loop exercised what it claims to.
    expect(totals.acked).toBeGreaterThanOrEqual(CYCLES * 100);
    expect(totals.flushesAcked).toBeGreaterThan(0);
    expect(totals.fuaAcked).toBeGreaterThan(0);
    expect(totals.zeroesAcked).toBeGreaterThan(0);
    expect(totals.trimsAcked).toBeGreaterThan(0);
    expect(totals.forced, 'no unit was pinned by a durable write: the loop checked nothing strict').toBeGreaterThan(0);
    const injected = daemons.slice(0, CYCLES).reduce((n, d) => n + (d.output().match(/injected fault/g)?.length ?? 0), 0);
    expect(injected, 'the store never failed during the loop').toBeGreaterThan(0);

    // The newest snapshot, taken now through the daemon, equals the disk.
    const created = await runOk(process.execPath, [blockgateBin, 'snapshot', 'create', 'k', '--admin-socket', daemon.adminSocket, '--json', '--timeout', '100s'], { timeoutMs: 110_000 });
    const group = JSON.parse(created.stdout) as { state: string; members: Array<{ volume: string; snapshot: string }> };
    expect(group.state).toBe('complete');
    const snapshot = group.members.find((m) => m.volume === 'k')!.snapshot;
    expect(await daemon.stop()).toBe(0);
    expect(await sha256File(disk), 'disk = what the last check read').toBe(sha256);
    // The snapshot just taken and the newest one in the store (the uploader may have committed a root since) both equal the disk.
    const list = await runOk(process.execPath, [blockgateBin, 'snapshot', 'list', '--volume', 'k', '--store', join(dir, 'store'), '--json']);
    const ids = (JSON.parse(list.stdout) as Array<{ id: string }>).map((r) => r.id);
    expect(ids).toContain(snapshot);
    for (const id of new Set([snapshot, ids.at(-1)!])) {
      const image = join(dir, `${id}.img`);
      await runOk(process.execPath, [blockgateBin, 'snapshot', 'download', id, image, '--store', join(dir, 'store')], { timeoutMs: 110_000 });
      expect(await sha256File(image), `snapshot ${id} = disk`).toBe(sha256);
    }
    process.stdout.write(`stored kill loop: ${JSON.stringify({ ...totals, injectedFaultsLogged: injected })}\n`);
  }, 600_000);
});
