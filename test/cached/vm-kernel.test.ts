// A cached volume as seen by the Linux kernel NBD client (nbd.ko + nbd-client)
// in a qemu VM (test/harness/vm):
//   boot 1: attach, mkfs.ext4, write files and a checksum manifest, sync,
//           umount, e2fsck clean, disconnect;
//   host:   wait until the store holds every write, stop the daemon, wipe the
//           chunk cache directory AND the write log, restart;
//   boot 2: re-attach, e2fsck clean, every file matches the manifest — all
//           of it fetched from the object store.
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/daemon/admin-api.js';
import type { DaemonStatus } from '../../src/daemon/status.js';
import { repoRoot, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { waitFor } from '../harness/nbd-tools.js';
import { buildInitramfs, describeRun, parseManifest, runGuest, taggedLines, vmSkipReason, type GuestResult } from '../harness/vm/index.js';

const skip = vmSkipReason([]);
const guestScript = join(import.meta.dirname, '..', 'vm', 'guest-ext4.sh');
const BOOT_TIMEOUT_MS = 240_000;


describe.skipIf(skip !== undefined)('kernel NBD client in a VM against a cached volume', () => {
  let dir: string;
  let daemon: DaemonHandle | undefined;
  let written: Map<string, string>;
  let cfg: Record<string, unknown>;

  const boot = async (mode: 'write' | 'verify'): Promise<GuestResult> => {
    const r = await runGuest({ port: daemon!.port, exportName: 'vm', script: guestScript, args: [mode], timeoutMs: BOOT_TIMEOUT_MS });
    console.log(`vm ${mode} boot (cached): exit ${r.exitCode}, wall ${r.wallMs} ms, accel ${r.accel}`);
    return r;
  };
  const serverLog = (): string => (daemon ? `\n--- daemon output (tail)\n${daemon.output().split('\n').slice(-40).join('\n')}` : '');

  beforeAll(async () => {
    if (!existsSync(join(repoRoot, 'dist', 'cli', 'main.js'))) throw new Error('run `npm run build` first');
    buildInitramfs();
    dir = tempDir('blockgate-vm-cached-');
    cfg = {
      dataDir: join(dir, 'data'), store: { url: join(dir, 'store') },
      volumes: [{
        name: 'vm', mode: 'cached', size: '512MiB', cache: { dir: join(dir, 'cache'), size: '64MiB' },
        writeLog: { dir: join(dir, 'log'), size: '256MiB' }, uploadInterval: '500ms',
      }],
    };
    daemon = await startDaemon(cfg, { dir, timeoutMs: 90_000 });
  });

  afterAll(async () => {
    await daemon?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('boot 1: mkfs.ext4, write files, fsck clean, disconnect', async () => {
    const r = await boot('write');
    expect(r.exitCode, describeRun(r) + serverLog()).toBe(0);
    expect(r.console).toContain('WRITE OK');
    written = parseManifest(taggedLines(r.console, 'SHA256 '));
    expect(written.size, 'manifest lines from boot 1').toBe(203);
  }, BOOT_TIMEOUT_MS + 60_000);

  it('boot 2 after a restart with the cache and the log wiped: files intact from the store', async () => {
    expect(written, 'boot 1 did not pass').toBeDefined();
    const drained = await waitFor(async () => {
      const s = (await adminRequest(daemon!.adminSocket, 'GET', '/v1/status')) as DaemonStatus;
      return (s.volumes[0]!.details as { log: { records: number } }).log.records === 0;
    }, 180_000, 200);
    expect(drained, 'every write uploaded').toBe(true);
    expect(await daemon!.stop(), serverLog()).toBe(0);
    const errors = daemon!.output().split('\n').filter((l) => /"level":"(error|fatal)"/.test(l));
    expect(errors, 'error records in the daemon log').toEqual([]);
    rmSync(join(dir, 'cache'), { recursive: true, force: true });
    rmSync(join(dir, 'log'), { recursive: true, force: true });
    daemon = await startDaemon(cfg, { dir, timeoutMs: 90_000 });
    const r = await boot('verify');
    expect(r.exitCode, describeRun(r) + serverLog()).toBe(0);
    expect(r.console).toContain('VERIFY OK');
    expect(parseManifest(taggedLines(r.console, 'SHA256 '))).toEqual(written);
  }, BOOT_TIMEOUT_MS + 300_000);
});
