// Volumes created at run time through the admin API, and restores: a stored
// volume is created, written and snapshotted; it survives a restart; after its
// local disk is lost it is restored from the snapshot, served at once and
// filled lazily.
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/daemon/admin-api.js';
import { startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';

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

  beforeAll(async () => {
    await run('bash', ['-c', `head -c 4194304 /dev/urandom > '${dir}/data.bin'`]);
    d = await startDaemon(config(), { dir });
  });
  afterAll(async () => {
    await d?.stop();
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
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/volumes', { name: 'x', mode: 'raw' })).rejects.toThrow(/size is required/);
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/restores', { snapshot: 'vsnap-0000', volume: 'nope' })).rejects.toThrow();
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
