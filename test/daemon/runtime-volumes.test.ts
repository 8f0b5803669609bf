// Volumes created at run time through the admin API, and restores: a stored
// volume is created, written and snapshotted; it survives a restart; after its
// local disk is lost it is restored from the snapshot, served at once and
// filled lazily.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/daemon/admin-api.js';
import { stringify } from 'yaml';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';

const run = promisify(execFile);

describe('run-time volumes and restores (admin API)', () => {
  const dir = tempDir('bg-runtime-vol-');
  const config = (): Record<string, unknown> => ({
    store: { url: join(dir, 'store') },
    dataDir: join(dir, 'data'),
    volumes: [{ name: 'boot', mode: 'raw', size: '1MiB', disk: join(dir, 'boot.img') }],
  });
  let d: DaemonHandle;
  let snapshotId = '';
  const writeYaml = (name: string, cfg: Record<string, unknown>): string => {
    const p = join(dir, name);
    writeFileSync(p, stringify(cfg));
    return p;
  };

  beforeAll(async () => {
    await run('bash', ['-c', `head -c 4194304 /dev/urandom > '${dir}/data.bin'`]);
    d = await startDaemon(config(), { dir });
  });
  afterAll(async () => {
    await d?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('creates a stored volume and serves it at once', async () => {
    const created = await adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'st', mode: 'stored', size: '32MiB' });
    expect(created).toMatchObject({ name: 'st', mode: 'stored', size: 32 * 1024 * 1024 });
    await run('bash', ['-c', `nbdcopy '${dir}/data.bin' '${d.uri('st')}'`]);
    const snap = (await adminRequest(d.adminSocket, 'POST', '/v1/snapshots', { volumes: ['st'], waitSeconds: 120 })) as { id: string; state: string };
    expect(snap.state).toBe('complete');
    snapshotId = snap.id;
  });

  it('refuses bad requests with clear errors', async () => {
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/restores', {})).rejects.toThrow(/body must be \{"snapshot"/);
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'st', mode: 'raw', size: '1MiB' })).rejects.toThrow(/already served/);
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'x', mode: 'raw' })).rejects.toThrow(/^volume\.size: is required$/);
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/restores', { snapshot: 'vsnap-0000', volume: 'nope' })).rejects.toThrow();
  });

  it('validates run-time volumes with the YAML schema: a bad blockSize is refused, naming the key, and nothing is created', async () => {
    // The same schema object as a `volumes:` entry of the config file: same rule, same message.
    const yamlMessage = /blockSize: must be a power of two between 64 KiB and 4 MiB \(got '3MiB'\)/;
    const check = spawnSync(process.execPath, [blockgateBin, 'serve', '--check', '--config', writeYaml('bad-block.yaml', {
      store: { url: join(dir, 'store') },
      volumes: [{ name: 'y', mode: 'stored', disk: join(dir, 'y.img'), writeLog: { dir: join(dir, 'ylog'), size: '8MiB' }, blockSize: '3MiB' }],
    })], { encoding: 'utf8' });
    expect(check.status).toBe(1);
    expect(check.stderr).toMatch(/volumes\[0\]\.blockSize: /);
    expect(check.stderr).toMatch(yamlMessage);

    for (const blockSize of ['3MiB', 1000, '8MiB', '32KiB']) {
      const err = await adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'badblk', mode: 'stored', size: '8MiB', blockSize }).then(() => undefined, (e: unknown) => e);
      expect(err, `blockSize ${blockSize}`).toMatchObject({ code: 'ERR_INVALID_ARGUMENT' });
      expect((err as Error).message).toMatch(/^volume\.blockSize: must be a power of two between 64 KiB and 4 MiB/);
    }
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'badblk', mode: 'stored', size: '8MiB', blockSize: '3MiB' })).rejects.toThrow(yamlMessage);
    // Unknown keys are refused too (a typo must not fall back to a default), and so is a bad duration.
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'badblk', mode: 'stored', size: '8MiB', blocksize: '1MiB' }))
      .rejects.toThrow(/volume\.blocksize: unknown key/);
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'badblk', mode: 'stored', size: '8MiB', uploadInterval: 'soon' }))
      .rejects.toThrow(/volume\.uploadInterval: 'soon' is not a duration/);
    const status = (await adminRequest(d.adminSocket, 'GET', '/v1/status')) as { volumes: Array<{ name: string }> };
    expect(status.volumes.map((v) => v.name)).not.toContain('badblk');
    expect(existsSync(join(dir, 'data', 'runtime-volumes', 'badblk.json'))).toBe(false);
    expect(existsSync(join(dir, 'data', 'volumes', 'badblk'))).toBe(false);

    // A valid non-default block size is taken, and the volume's snapshots use it.
    const ok = await adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'blk1m', mode: 'stored', size: '8MiB', blockSize: '1MiB', uploadInterval: '500ms' });
    expect(ok).toMatchObject({ name: 'blk1m', mode: 'stored', size: 8 * 1024 * 1024 });
    const saved = JSON.parse(readFileSync(join(dir, 'data', 'runtime-volumes', 'blk1m.json'), 'utf8')) as { blockSize: number; uploadIntervalMs: number };
    expect(saved).toMatchObject({ blockSize: 1024 * 1024, uploadIntervalMs: 500 });
    await run('bash', ['-c', `head -c 2097152 '${dir}/data.bin' | nbdcopy - '${d.uri('blk1m')}'`]);
    const snap = (await adminRequest(d.adminSocket, 'POST', '/v1/snapshots', { volumes: ['blk1m'], waitSeconds: 120 })) as { state: string; members: Array<{ snapshot: string }> };
    expect(snap.state).toBe('complete');
    const info = await run(process.execPath, [blockgateBin, 'snapshot', 'show', '--store', join(dir, 'store'), '--json', snap.members[0]!.snapshot]);
    expect(JSON.parse(info.stdout)).toMatchObject({ blockSize: 1024 * 1024 });
  });

  it('keeps run-time volumes across a restart', async () => {
    expect(await d.stop()).toBe(0);
    d = await startDaemon(config(), { dir });
    const { stdout } = await run('bash', ['-c', `nbdcopy '${d.uri('st')}' - | head -c 4194304 | cmp - '${dir}/data.bin' && echo same`]);
    expect(stdout.trim()).toBe('same');
  });

  it('recovers a lost volume from its snapshot: served at once, filled lazily, progress listed', async () => {
    // The disk, its log and its run-time record are gone (a lost local disk).
    expect(await d.stop()).toBe(0);
    rmSync(join(dir, 'data', 'volumes', 'st'), { recursive: true, force: true });
    rmSync(join(dir, 'data', 'runtime-volumes', 'st.json'), { force: true });
    d = await startDaemon(config(), { dir });
    await expect(run('nbdinfo', ['--size', d.uri('st')])).rejects.toThrow();
    const restored = await adminRequest(d.adminSocket, 'POST', '/v1/restores', { snapshot: snapshotId, volume: 'st' });
    expect(restored).toMatchObject({ name: 'st', mode: 'stored', restoreFrom: snapshotId });
    const { stdout } = await run('bash', ['-c', `nbdcopy '${d.uri('st')}' - | head -c 4194304 | cmp - '${dir}/data.bin' && echo same`]);
    expect(stdout.trim()).toBe('same');
    const list = (await adminRequest(d.adminSocket, 'GET', '/v1/restores')) as { restores: Array<{ volume: string; totalBlocks: number }> };
    expect(list.restores.find((r) => r.volume === 'st')?.totalBlocks).toBeGreaterThan(0);
  });
});
