// Cached volume, SIGKILL loop (test/harness/kill-loop.ts): three NBD
// connections (python3-libnbd) overwrite the same 4 KiB units with new
// versions, with WRITE_ZEROES, TRIM, FUA and FLUSH in the mix, while the
// uploader moves the log into the store and the chunk cache (half the
// volume) evicts and block uploads are slow and fail now and then
// (BLOCKGATE_TEST_FAULTS); the daemon is SIGKILLed after a seeded number of
// acknowledged operations. After every restart each unit must hold its last
// durable version or a later acknowledged/begun one (unit-model.ts). After
// the last restart a snapshot taken through the daemon, downloaded offline,
// equals the volume read over NBD, and so does the volume read again after
// a restart with the cache wiped. On the filesystem store and on Ceph RGW.
// Seed: BLOCKGATE_TEST_SEED replays a run.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { readUnits } from '../harness/crash-writer.js';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { killLoop } from '../harness/kill-loop.js';
import { requireTools, runOk, sha256File } from '../harness/nbd-tools.js';
import { testSeed } from '../harness/prng.js';
import { createTestBucket } from '../harness/rgw.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;
const daemons: DaemonHandle[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.kill();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

beforeAll(() => requireTools('nbdsh'));

interface StoreSetup {
  config: Record<string, unknown>;
  /** `snapshot download` flags naming the same store, and its environment (credentials stay off the command line). */
  flags: string[];
  env?: Record<string, string>;
}

async function killLoopTest(name: string, cycles: number, store: (dir: string) => Promise<StoreSetup>): Promise<void> {
  const seed = testSeed(`cached kill loop (${name})`);
  const dir = tempDir('bg-cached-kill-');
  dirs.push(dir);
  const s = await store(dir);
  const config = {
    dataDir: join(dir, 'data'), store: s.config,
    volumes: [{
      name: 'c1', mode: 'cached', size: '16MiB', blockSize: '64KiB', uploadInterval: '200ms',
      cache: { dir: join(dir, 'cache'), size: '8MiB' }, writeLog: { dir: join(dir, 'log'), size: '64MiB' },
    }],
  };
  // While the loop runs block uploads are slow and fail now and then (the 3rd and every Nth put:
  // fail before or after it lands), so kills also land mid-upload; the starts after the loop are
  // fault-free.
  let starts = 0;
  const faults = JSON.stringify({ rules: [
    { ops: ['put'], action: 'delay', latencyMs: [0, 40] },
    { ops: ['put'], keyPrefix: 'blocks/', nth: 3, action: 'fail-after' },
    { ops: ['put'], keyPrefix: 'blocks/', every: 23, action: 'fail-after' },
    { ops: ['put'], keyPrefix: 'blocks/', every: 29, action: 'fail' },
  ] });
  const start = async (): Promise<DaemonHandle> => {
    const d = await startDaemon(config, { dir, timeoutMs: 90_000, ...(starts++ < cycles ? { env: { BLOCKGATE_TEST_FAULTS: faults } } : {}) });
    daemons.push(d);
    return d;
  };
  const log = (l: string): void => { process.stdout.write(`cached kill loop (${name}): ${l}\n`); };
  const { daemon, sha256, totals } = await killLoop({
    start, exportName: 'c1', size: SIZE, cycles, seed, killAfter: [100, 600],
    writer: { threads: 3, hotUnits: 256, maxUnits: 4, flush: 0.08, zero: 0.06, trim: 0.06, fua: 0.1 },
    log,
  });
  expect(totals.checks).toBe(cycles + 1);
  expect(totals.units).toBe((cycles + 1) * (SIZE / 4096));
  expect(totals.acked).toBeGreaterThanOrEqual(cycles * 100);
  expect(totals.flushesAcked).toBeGreaterThan(0);
  expect(totals.fuaAcked).toBeGreaterThan(0);
  expect(totals.zeroesAcked).toBeGreaterThan(0);
  expect(totals.trimsAcked).toBeGreaterThan(0);
  expect(totals.forced, 'no unit was pinned by a durable write: the loop checked nothing strict').toBeGreaterThan(0);
  const injected = daemons.slice(0, cycles).reduce((n, d) => n + (d.output().match(/injected fault/g)?.length ?? 0), 0);
  expect(injected, 'the store never failed during the loop').toBeGreaterThan(0);

  // The newest snapshot, taken now through the daemon, equals the volume as the last check read it over NBD.
  const snap = (await runOk(process.execPath, [blockgateBin, 'volume', 'snapshot', 'c1', '--wait', '120', '--admin-socket', daemon.adminSocket], { timeoutMs: 130_000 })).stdout.trim();
  expect(snap).toMatch(/^snap-[0-9a-f]+$/);
  const image = join(dir, 'snapshot.img');
  await runOk(process.execPath, [blockgateBin, 'snapshot', 'download', snap, image, ...s.flags], { timeoutMs: 130_000, ...(s.env ? { env: s.env } : {}) });
  expect(await sha256File(image), `snapshot ${snap} = the volume`).toBe(sha256);
  expect(await daemon.stop()).toBe(0);
  daemons.splice(daemons.indexOf(daemon), 1);

  // Without the cache the volume comes from the store and the log: the same bytes.
  rmSync(join(dir, 'cache'), { recursive: true, force: true });
  const again = await start();
  expect((await readUnits(again.uri('c1'), SIZE)).sha256, 'the volume after a restart with the cache wiped').toBe(sha256);
  expect(await again.stop()).toBe(0);
  daemons.splice(daemons.indexOf(again), 1);
  log(JSON.stringify({ ...totals, injectedFaultsLogged: injected }));
}

const CYCLES = Number(process.env.BLOCKGATE_KILL_CYCLES ?? 8);

describe('cached volume: SIGKILL loop', () => {
  it(`filesystem store: every durable write survives ${CYCLES} SIGKILLs; the last snapshot equals the volume`, async () => {
    await killLoopTest('fs', CYCLES, async (dir) => ({
      config: { url: join(dir, 'store') },
      flags: ['--store', join(dir, 'store')],
    }));
  }, 600_000);

  it('Ceph RGW: every durable write survives 4 SIGKILLs; the last snapshot equals the volume', async () => {
    const s3 = inject('s3');
    const bucket = await createTestBucket(s3, 'cached-kill');
    await killLoopTest('rgw', 4, async () => ({
      config: { url: `s3://${bucket}/gw`, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, pathStyle: true },
      flags: ['--store', `s3://${bucket}/gw`, '--endpoint', s3.endpoint, '--region', s3.region],
      env: { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey },
    }));
  }, 600_000);
});
