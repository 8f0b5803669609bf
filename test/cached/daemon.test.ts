// Cached volumes through the real daemon (bin/blockgate serve) with real
// clients: nbdcopy round trips (sha256), qemu-io patterns, restart with the
// cache wiped, run-time volume creation from a snapshot (CLI -> admin API)
// that survives a restart (the SIGKILL loop: kill-loop.test.ts), fencing
// between two daemons on one store, and a round trip on Ceph RGW.
import { createHash } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { adminRequest } from '../../src/daemon/admin-api.js';
import type { DaemonStatus } from '../../src/daemon/status.js';
import { blockgateBin, repoRoot, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { randomFile, requireTools, run, runOk, sha256File, waitFor } from '../harness/nbd-tools.js';
import { createTestBucket } from '../harness/rgw.js';

const MiB = 1024 * 1024;
const daemons: DaemonHandle[] = [];
const dirs: string[] = [];

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.kill().catch(() => undefined);
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

beforeAll(() => {
  requireTools('nbdcopy', 'nbdsh', 'qemu-io');
  if (!existsSync(join(repoRoot, 'dist', 'cli', 'main.js'))) throw new Error('run `npm run build` first');
});

function newDir(): string {
  const d = tempDir('bg-cached-daemon-');
  dirs.push(d);
  return d;
}

interface VolOpts { name?: string; size?: string; cacheSize?: string; logSize?: string; tag?: string; extra?: Record<string, unknown> }

function cachedVolume(dir: string, o: VolOpts = {}): Record<string, unknown> {
  const name = o.name ?? 'c1';
  const tag = o.tag ?? '';
  return {
    name, mode: 'cached', size: o.size ?? '64MiB', blockSize: '64KiB',
    cache: { dir: join(dir, `cache${tag}`, name), size: o.cacheSize ?? '32MiB' },
    writeLog: { dir: join(dir, `log${tag}`, name), size: o.logSize ?? '64MiB' },
    uploadInterval: '200ms', ...o.extra,
  };
}

function config(dir: string, volumes: Array<Record<string, unknown>>, over: Record<string, unknown> = {}): Record<string, unknown> {
  return { dataDir: join(dir, 'data'), store: { url: join(dir, 'store') }, volumes, ...over };
}

async function start(dir: string, cfg: Record<string, unknown>): Promise<DaemonHandle> {
  const d = await startDaemon(cfg, { dir, timeoutMs: 90_000 });
  daemons.push(d);
  return d;
}

async function stop(d: DaemonHandle): Promise<void> {
  const code = await d.stop();
  daemons.splice(daemons.indexOf(d), 1);
  expect(code, d.output().split('\n').slice(-20).join('\n')).toBe(0);
}

async function status(d: DaemonHandle): Promise<DaemonStatus> {
  return (await adminRequest(d.adminSocket, 'GET', '/v1/status')) as DaemonStatus;
}

async function drained(d: DaemonHandle, name: string, timeoutMs = 120_000): Promise<void> {
  const ok = await waitFor(async () => {
    const v = (await status(d)).volumes.find((x) => x.name === name);
    const log = (v?.details as { log?: { records: number } } | undefined)?.log;
    return log !== undefined && log.records === 0;
  }, timeoutMs, 100);
  expect(ok, `volume ${name} drained to the store`).toBe(true);
}

async function cli(d: DaemonHandle, args: string[]): Promise<string> {
  const r = await runOk(process.execPath, [blockgateBin, ...args, '--admin-socket', d.adminSocket], { timeoutMs: 120_000 });
  return r.stdout.trim();
}

describe('cached volume through the daemon', () => {
  it('nbdcopy round trip (sha256); qemu-io patterns; restart with the cache wiped reads everything from the store', async () => {
    const dir = newDir();
    const cfg = config(dir, [cachedVolume(dir)]);
    let d = await start(dir, cfg);
    const src = join(dir, 'src.img');
    const want = randomFile(src, 64 * MiB);
    await runOk('nbdcopy', ['--flush', src, d.uri('c1')], { timeoutMs: 180_000 });
    const out1 = join(dir, 'out1.img');
    await runOk('nbdcopy', [d.uri('c1'), out1], { timeoutMs: 180_000 });
    expect(await sha256File(out1)).toBe(want);
    // qemu-io: unaligned/partial writes over store-backed blocks, verified by pattern reads.
    await drained(d, 'c1');
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0xab 4096 1000', '-c', 'write -P 0xcd 100000 300000', '-c', 'flush',
      '-c', 'read -P 0xab 4096 1000', '-c', 'read -P 0xcd 100000 300000', d.uri('c1')]);
    const s = (await status(d)).volumes.find((v) => v.name === 'c1')!;
    expect(s.mode).toBe('cached');
    expect(s.details).toMatchObject({ cache: { capacityBytes: 32 * MiB }, fenced: false });
    await drained(d, 'c1');
    await stop(d);

    rmSync(join(dir, 'cache'), { recursive: true, force: true });
    d = await start(dir, cfg);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0xab 4096 1000', '-c', 'read -P 0xcd 100000 300000', d.uri('c1')]);
    const out2 = join(dir, 'out2.img');
    await runOk('nbdcopy', [d.uri('c1'), out2], { timeoutMs: 180_000 });
    const expected = createHash('sha256');
    const { readFileSync } = await import('node:fs');
    const img = readFileSync(src);
    img.fill(0xab, 4096, 4096 + 1000);
    img.fill(0xcd, 100000, 100000 + 300000);
    expected.update(img);
    expect(await sha256File(out2)).toBe(expected.digest('hex'));
    const st = (await status(d)).volumes.find((v) => v.name === 'c1')!.details as { cache: { misses: number; bytesCached: number } };
    expect(st.cache.misses).toBeGreaterThan(0);
    expect(st.cache.bytesCached).toBeLessThanOrEqual(32 * MiB);
    await stop(d);
  });

  it('volume create --from-snapshot at run time: usable at once, survives a restart; clone of a volume', async () => {
    const dir = newDir();
    const cfg = config(dir, [cachedVolume(dir, { size: '16MiB' })]);
    let d = await start(dir, cfg);
    const src = join(dir, 'src.img');
    const want = randomFile(src, 16 * MiB);
    await runOk('nbdcopy', ['--flush', src, d.uri('c1')], { timeoutMs: 120_000 });
    const snap = await cli(d, ['volume', 'snapshot', 'c1', '--description', 'gold', '--wait', '120']);
    expect(snap).toMatch(/^snap-[0-9a-f]+$/);
    // Writes after the snapshot do not reach the new volume.
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x11 0 1M', '-c', 'flush', d.uri('c1')]);
    const created = await cli(d, ['volume', 'create', 'r1', '--mode', 'cached', '--from-snapshot', snap, '--cache-size', '8MiB', '--log-size', '16MiB']);
    expect(created).toContain('volume r1 created');
    const out = join(dir, 'r1.img');
    await runOk('nbdcopy', [d.uri('r1'), out], { timeoutMs: 120_000 });
    expect(await sha256File(out)).toBe(want);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x22 8M 64k', '-c', 'flush', d.uri('r1')]);
    // Clone of a volume = from its latest snapshot (taken now): includes the 0x11 write.
    await cli(d, ['volume', 'create', 'k1', '--clone', 'c1', '--cache-size', '8MiB', '--log-size', '16MiB']);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x11 0 1M', d.uri('k1')]);
    expect((await cli(d, ['volume', 'snapshots', 'c1'])).split('\n').some((l) => l.startsWith(snap))).toBe(true);
    expect(await cli(d, ['volume', 'status', 'r1'])).toMatch(/hit ratio/);
    // Bad input: clear errors.
    const dup = await run(process.execPath, [blockgateBin, 'volume', 'create', 'r1', '--size', '1MiB', '--admin-socket', d.adminSocket]);
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/already served/);
    const missing = await run(process.execPath, [blockgateBin, 'volume', 'create', 'r2', '--from-snapshot', 'snap-000000000000ffffffffff', '--admin-socket', d.adminSocket]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/ERR_SNAPSHOT_NOT_FOUND/);
    await stop(d);
    // The run-time volumes come back after a restart, with their data.
    d = await start(dir, cfg);
    const names = (await status(d)).volumes.map((v) => v.name).sort();
    expect(names).toEqual(['c1', 'k1', 'r1']);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x22 8M 64k', d.uri('r1')]);
    await stop(d);
  });

  it('config fromSnapshot: a second daemon serves a volume created from the first one\'s snapshot', async () => {
    const dir = newDir();
    let d = await start(dir, config(dir, [cachedVolume(dir, { size: '8MiB' })]));
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x5a 0 8M', '-c', 'flush', d.uri('c1')]);
    const snap = await cli(d, ['volume', 'snapshot', 'c1', '--wait', '120']);
    await stop(d);
    const cfg2 = config(dir, [cachedVolume(dir, { name: 'fromsnap', tag: '2', extra: { size: undefined, blockSize: undefined, fromSnapshot: snap } })], { dataDir: join(dir, 'data2') });
    d = await start(dir, cfg2);
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x5a 0 8M', d.uri('fromsnap')]);
    await stop(d);
  });
});

describe('fencing between two daemons on one store', () => {
  it('the second gateway is refused (ERR_LEASE_HELD); a forced takeover fences the first: its writes fail with EIO', async () => {
    const dir = newDir();
    const vol = (tag: string, extra: Record<string, unknown> = {}): Record<string, unknown> =>
      cachedVolume(dir, { name: 'shared', size: '8MiB', tag, extra: { lease: { ttl: '2s', ...extra } } });
    const a = await start(dir, config(dir, [vol('A')], { dataDir: join(dir, 'dataA') }));
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x77 0 1M', '-c', 'flush', a.uri('shared')]);
    await drained(a, 'shared');
    // B, same store, while A holds the lease: refused, with a stable code.
    const refused = await startDaemon(config(dir, [vol('B')], { dataDir: join(dir, 'dataB'), admin: { socket: join(dir, 'adminB.sock') } }), { dir, timeoutMs: 60_000 }).then(
      (h) => { daemons.push(h); return undefined; },
      (err: Error) => err.message,
    );
    expect(refused).toMatch(/ERR_LEASE_HELD/);
    expect(refused).toMatch(/open for writing on another gateway/);
    // B forces the takeover.
    const b = await start(dir, config(dir, [vol('B', { takeover: 'force' })], { dataDir: join(dir, 'dataB'), admin: { socket: join(dir, 'adminB.sock') } }));
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x77 0 1M', b.uri('shared')]);
    // A notices at its next renewal and refuses writes (EIO) and flushes from then on.
    const fenced = await waitFor(async () => {
      const r = await run('qemu-io', ['-f', 'raw', '-c', 'write -P 0x99 0 4k', '-c', 'flush', a.uri('shared')]);
      return /Input\/output error/.test(r.stdout + r.stderr);
    }, 30_000, 300);
    expect(fenced, a.output().split('\n').slice(-10).join('\n')).toBe(true);
    expect(a.output()).toMatch(/FENCED/);
    const sa = (await status(a)).volumes[0]!.details as { fenced: boolean };
    expect(sa.fenced).toBe(true);
    // B's writes land; A's never reach the store.
    await runOk('qemu-io', ['-f', 'raw', '-c', 'write -P 0x33 4k 4k', '-c', 'flush', b.uri('shared')]);
    await drained(b, 'shared');
    await stop(b);
    const c = await start(dir, config(dir, [vol('C', { takeover: 'expired' })], { dataDir: join(dir, 'dataB'), admin: { socket: join(dir, 'adminC.sock') } })); // same gateway id as B
    await runOk('qemu-io', ['-f', 'raw', '-c', 'read -P 0x77 0 4k', '-c', 'read -P 0x33 4k 4k', c.uri('shared')]);
    await stop(c);
    await a.kill();
  });
});

describe('cached volume on Ceph RGW', () => {
  it('nbdcopy round trip through an S3 store; restart with the cache wiped', async () => {
    const s3 = inject('s3');
    const bucket = await createTestBucket(s3, 'cached-daemon');
    const dir = newDir();
    const cfg = config(dir, [cachedVolume(dir, { size: '32MiB', cacheSize: '16MiB' })], {
      store: { url: `s3://${bucket}/gw1`, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, pathStyle: true },
    });
    let d = await start(dir, cfg);
    const src = join(dir, 'src.img');
    const want = randomFile(src, 32 * MiB);
    await runOk('nbdcopy', ['--flush', src, d.uri('c1')], { timeoutMs: 180_000 });
    await drained(d, 'c1', 180_000);
    await stop(d);
    rmSync(join(dir, 'cache'), { recursive: true, force: true });
    d = await start(dir, cfg);
    const out = join(dir, 'out.img');
    await runOk('nbdcopy', [d.uri('c1'), out], { timeoutMs: 180_000 });
    expect(await sha256File(out)).toBe(want);
    await stop(d);
  });
});
