// Stored volumes through the real daemon and CLI: nbdcopy writes, `snapshot
// create` through the admin API, `restore` full and incremental (on Ceph RGW),
// lazy restore served over NBD at once (filesystem store), status details.
import { copyFileSync, openSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDaemon, tempDir, blockgateBin, type DaemonHandle } from '../harness/daemon.js';
import { randomFile, requireTools, runOk, sha256File } from '../harness/nbd-tools.js';
import { createTestBucket } from '../harness/rgw.js';

const SIZE = 64 * 1024 * 1024;

function cli(args: string[], env: Record<string, string> = {}): Promise<{ stdout: string; stderr: string }> {
  return runOk(process.execPath, [blockgateBin, ...args], { timeoutMs: 110_000, env: { ...process.env, ...env } as Record<string, string> });
}

describe('stored volume through the daemon', () => {
  let dir: string;
  const daemons: DaemonHandle[] = [];
  beforeAll(() => {
    requireTools('nbdcopy', 'nbdinfo');
    dir = tempDir('blockgate-stored-daemon-');
  });
  afterAll(async () => {
    for (const d of daemons) await d.kill();
  });

  it('RGW: nbdcopy in, snapshot create, restore full and incremental match byte for byte', async () => {
    const s3 = inject('s3');
    const bucket = await createTestBucket(s3, 'stored-roundtrip');
    const storeUrl = `s3://${bucket}/gw`;
    const d = await startDaemon({
      store: { url: storeUrl, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
      volumes: [{ name: 'sv', mode: 'stored', size: '64MiB', disk: join(dir, 'sv.img'), writeLog: { dir: join(dir, 'sv-log'), size: '256MiB' } }],
    }, { dir: tempDir(), timeoutMs: 60_000 });
    daemons.push(d);
    const src = join(dir, 'src.img');
    randomFile(src, SIZE);
    await runOk('nbdcopy', ['--flush', src, d.uri('sv')], { timeoutMs: 110_000 });
    const created = await cli(['snapshot', 'create', 'sv', '--admin-socket', d.adminSocket, '--json', '--timeout', '100s']);
    const g = JSON.parse(created.stdout) as { id: string; state: string; members: Array<{ snapshot: string }> };
    expect(g.state).toBe('complete');
    expect(g.id).toMatch(/^vsnap-/);
    const listed = await cli(['snapshot', 'volume-list', '--volume', 'sv', '--admin-socket', d.adminSocket, '--json']);
    expect((JSON.parse(listed.stdout) as Array<{ id: string }>).map((x) => x.id)).toContain(g.id);

    const status = JSON.parse((await cli(['status', '--json', '--admin-socket', d.adminSocket])).stdout) as { volumes: Array<{ name: string; mode: string; details?: { log: { capacityBytes: number }; upload: { lagSeconds: number }; root: { id: string } | null } }> };
    const sv = status.volumes.find((v) => v.name === 'sv')!;
    expect(sv.mode).toBe('stored');
    expect(sv.details?.log.capacityBytes).toBe(256 * 1024 * 1024);
    expect(sv.details?.root).not.toBeNull();

    const s3env = { AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    const out = join(dir, 'restored.img');
    const full = JSON.parse((await cli(['restore', g.id, '--to', out, '--store', storeUrl, '--endpoint', s3.endpoint, '--json'], s3env)).stdout) as { writtenBlocks: number };
    expect(full.writtenBlocks).toBe(SIZE / (512 * 1024));
    expect(await sha256File(out)).toBe(await sha256File(src));

    // Damage 3 blocks of the restored copy; an incremental restore rewrites only those.
    const fd = openSync(out, 'r+');
    for (const off of [0, 10 * 1024 * 1024 + 77, SIZE - 100]) writeSync(fd, Buffer.from('damage!'), 0, 7, off);
    closeSync(fd);
    const inc = JSON.parse((await cli(['restore', g.id, '--to', out, '--incremental', '--store', storeUrl, '--endpoint', s3.endpoint, '--json'], s3env)).stdout) as { writtenBlocks: number; skippedBlocks: number };
    expect(inc.writtenBlocks).toBe(3);
    expect(await sha256File(out)).toBe(await sha256File(src));
    expect(await d.stop()).toBe(0);
  });

  it('lazy restore: a volume re-created from a snapshot serves at once, fills in, survives a restart', async () => {
    const store = join(dir, 'fs-store');
    const d1 = await startDaemon({
      store: { url: store },
      volumes: [{ name: 'lz', mode: 'stored', size: '64MiB', disk: join(dir, 'lz.img'), writeLog: { dir: join(dir, 'lz-log'), size: '256MiB' }, blockSize: '256KiB' }],
    }, { dir: tempDir() });
    daemons.push(d1);
    const src = join(dir, 'lz-src.img');
    randomFile(src, SIZE);
    await runOk('nbdcopy', ['--flush', src, d1.uri('lz')], { timeoutMs: 110_000 });
    const g = JSON.parse((await cli(['snapshot', 'create', 'lz', '--admin-socket', d1.adminSocket, '--json'])).stdout) as { id: string; state: string };
    expect(g.state).toBe('complete');
    expect(await d1.stop()).toBe(0);

    // The local disk and log are lost: a new disk, lazily restored from the snapshot.
    const cfg = {
      store: { url: store },
      volumes: [{ name: 'lz', mode: 'stored', size: '64MiB', disk: join(dir, 'lz2.img'), writeLog: { dir: join(dir, 'lz2-log'), size: '256MiB' }, blockSize: '256KiB', restoreFrom: g.id }],
    };
    const d2 = await startDaemon(cfg, { dir: tempDir() });
    daemons.push(d2);
    const out = join(dir, 'lz-out.img');
    await runOk('nbdcopy', [d2.uri('lz'), out], { timeoutMs: 110_000 });
    expect(await sha256File(out)).toBe(await sha256File(src));
    // A write during the restore, then a restart: the restore resumes, the write survives.
    await runOk('nbdcopy', ['--flush', join(dir, 'lz-src.img'), d2.uri('lz')], { timeoutMs: 110_000 });
    await d2.kill();
    const d3 = await startDaemon(cfg, { dir: tempDir() });
    daemons.push(d3);
    const st = JSON.parse((await cli(['status', '--json', '--admin-socket', d3.adminSocket])).stdout) as { volumes: Array<{ details?: { restore: { totalBlocks: number } | null } }> };
    expect(st.volumes[0]!.details).toBeDefined();
    const out2 = join(dir, 'lz-out2.img');
    await runOk('nbdcopy', [d3.uri('lz'), out2], { timeoutMs: 110_000 });
    expect(await sha256File(out2)).toBe(await sha256File(src));
    copyFileSync(out2, join(dir, 'keep.img'));
    expect(await d3.stop()).toBe(0);
  });
});
