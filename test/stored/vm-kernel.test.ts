// A stored volume as seen by the Linux kernel NBD client (nbd.ko +
// nbd-client) in a qemu VM (test/harness/vm), through a lost local disk:
//   boot 1: attach, mkfs.ext4, mount, write files and a checksum manifest,
//           sync, re-read uncached, umount, e2fsck -f clean, disconnect
//   host:   `blockgate snapshot create vm` (admin socket), stop the daemon,
//           delete the disk and the write log, `blockgate restore ID --to
//           NEW --store STORE`, start the daemon on the restored disk
//           (a new write log)
//   boot 2: e2fsck -f clean, mount, every file matches the boot-1 manifest
//   lazy:   a third daemon on a fresh disk with `restoreFrom: ID` (no local
//           state), boot 3 verifies the same way while the volume is being
//           filled in from the store.
//   control: a copy of the restored disk with 4 KiB of random.bin
//           overwritten (located with debugfs), served by a raw volume:
//           the same verify boot must fail (the check catches wrong data).
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, tempDir, repoRoot, blockgateBin, type DaemonHandle } from '../harness/daemon.js';
import { runOk } from '../harness/nbd-tools.js';
import { buildInitramfs, describeRun, parseManifest, runGuest, taggedLines, vmSkipReason, type GuestResult } from '../harness/vm/index.js';

const skip = vmSkipReason();
const guestScript = join(import.meta.dirname, '..', 'vm', 'guest-ext4.sh');
const SIZE = 256 << 20;
const BOOT_TIMEOUT_MS = 240_000;
// Files written by boot 1: small.txt, random.bin, zeros.bin, tree/f1..f200, sparse/r1..r40.
const FILES = 3 + 200 + 40;


function cli(args: string[]): Promise<{ stdout: string; stderr: string }> {
  return runOk(process.execPath, [blockgateBin, ...args], { timeoutMs: 110_000 });
}

describe.skipIf(skip !== undefined)('stored volume: kernel NBD client in a VM, snapshot, lost disk, restore', () => {
  let dir: string;
  let store: string;
  let daemon: DaemonHandle | undefined;
  const all: DaemonHandle[] = [];
  let written: Map<string, string> | undefined;
  let snapshotId: string | undefined;
  let restored = false;

  const volume = (disk: string, log: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({
    store: { url: store },
    volumes: [{ name: 'vm', mode: 'stored', size: '256MiB', disk, writeLog: { dir: log, size: '256MiB' }, ...extra }],
  });
  const start = async (cfg: Record<string, unknown>): Promise<DaemonHandle> => {
    const d = await startDaemon(cfg, { dir: tempDir('blockgate-vm-stored-d-'), timeoutMs: 60_000 });
    all.push(d);
    daemon = d;
    expect(d.port, 'daemon reported no TCP listener').toBeGreaterThan(0);
    return d;
  };
  const serverLog = (): string => (daemon ? `\n--- daemon output (tail)\n${daemon.output().split('\n').slice(-40).join('\n')}` : '');
  const boot = async (mode: 'write' | 'verify', label: string): Promise<GuestResult> => {
    // "scattered": more data, spanning many 512 KiB store blocks.
    const args = mode === 'write' ? [mode, 'scattered'] : [mode];
    const r = await runGuest({ port: daemon!.port, exportName: 'vm', script: guestScript, args, timeoutMs: BOOT_TIMEOUT_MS });
    console.log(`vm ${label} boot: exit ${r.exitCode}, kernel boot ${r.bootSeconds ?? '?'} s (guest clock), wall ${r.wallMs} ms, accel ${r.accel}`);
    return r;
  };
  const verifyBoot = async (label: string): Promise<void> => {
    expect(written, 'boot 1 did not pass').toBeDefined();
    const r = await boot('verify', label);
    expect(r.exitCode, describeRun(r) + serverLog()).toBe(0);
    expect(r.console).toContain('VERIFY OK');
    expect(taggedLines(r.console, 'SIZE ')).toEqual([String(SIZE)]);
    const seen = parseManifest(taggedLines(r.console, 'SHA256 '));
    expect(seen.size).toBe(FILES);
    expect(seen).toEqual(written);
  };
  const errorRecords = (d: DaemonHandle): string[] => d.output().split('\n').filter((l) => /"level":"(error|fatal)"/.test(l));

  beforeAll(async () => {
    if (!existsSync(join(repoRoot, 'dist', 'cli', 'main.js'))) {
      throw new Error('dist/cli/main.js is missing: run `npm run build` (scripts/test.sh does)');
    }
    buildInitramfs();
    dir = tempDir('blockgate-vm-stored-');
    store = join(dir, 'store');
    await start(volume(join(dir, 'disk.img'), join(dir, 'log')));
  });

  afterAll(async () => {
    for (const d of all) await d.kill();
  });

  it('boot 1: mkfs.ext4, write files, fsck clean, disconnect', async () => {
    const r = await boot('write', 'write');
    expect(r.exitCode, describeRun(r) + serverLog()).toBe(0);
    expect(r.console).toContain('WRITE OK');
    expect(taggedLines(r.console, 'SIZE ')).toEqual([String(SIZE)]);
    const m = parseManifest(taggedLines(r.console, 'SHA256 '));
    expect(m.size, 'manifest lines from boot 1').toBe(FILES);
    written = m;
  }, BOOT_TIMEOUT_MS + 60_000);

  it('host: snapshot, stop, lose the disk and the log, full restore from the store', async () => {
    expect(written, 'boot 1 did not pass').toBeDefined();
    const d = daemon!;
    const created = await cli(['snapshot', 'create', 'vm', '--admin-socket', d.adminSocket, '--json', '--timeout', '100s']);
    const g = JSON.parse(created.stdout) as { id: string; state: string };
    expect(g.state).toBe('complete');
    expect(g.id).toMatch(/^vsnap-/);
    snapshotId = g.id;
    expect(await d.stop(), `daemon exit status on SIGTERM${serverLog()}`).toBe(0);
    expect(errorRecords(d), 'error records in the daemon log').toEqual([]);

    // The local disk is lost, and the write log with it.
    rmSync(join(dir, 'disk.img'));
    rmSync(join(dir, 'log'), { recursive: true });

    const target = join(dir, 'restored.img');
    const res = JSON.parse((await cli(['restore', g.id, '--to', target, '--store', store, '--json'])).stdout) as { writtenBlocks: number };
    expect(res.writtenBlocks).toBeGreaterThan(0);
    expect(statSync(target).size).toBe(SIZE);
    // The host sees a clean ext4 before any guest touches it.
    const fsck = spawnSync('e2fsck', ['-fn', target], { encoding: 'utf8' });
    expect(fsck.status, `e2fsck -fn ${target}:\n${fsck.stdout}${fsck.stderr}`).toBe(0);
    restored = true;
  }, 180_000);

  it('boot 2: the restored volume is a clean ext4 whose files match the manifest', async () => {
    expect(restored, 'restore did not pass').toBe(true);
    await start(volume(join(dir, 'restored.img'), join(dir, 'log2')));
    await verifyBoot('verify (full restore)');
    const d = daemon!;
    expect(await d.stop(), `daemon exit status on SIGTERM${serverLog()}`).toBe(0);
    expect(errorRecords(d), 'error records in the daemon log').toEqual([]);
  }, BOOT_TIMEOUT_MS + 120_000);

  it('boot 3: lazy restore (restoreFrom) on a fresh disk verifies the same way', async () => {
    expect(snapshotId, 'no snapshot').toBeDefined();
    await start(volume(join(dir, 'lazy.img'), join(dir, 'log3'), { restoreFrom: snapshotId }));
    await verifyBoot('verify (lazy restore)');
    const d = daemon!;
    expect(await d.stop(), `daemon exit status on SIGTERM${serverLog()}`).toBe(0);
    expect(errorRecords(d), 'error records in the daemon log').toEqual([]);
  }, BOOT_TIMEOUT_MS + 120_000);

  it('control: the verify boot fails on a disk with one corrupted data block', async () => {
    expect(restored, 'restore did not pass').toBe(true);
    const bad = join(dir, 'corrupt.img');
    copyFileSync(join(dir, 'restored.img'), bad);
    // Physical block (4 KiB fs blocks) of random.bin's logical block 100.
    const out = execFileSync('debugfs', ['-R', 'bmap /random.bin 100', bad], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const pblk = Number(out.trim());
    expect(pblk, `debugfs bmap: ${out}`).toBeGreaterThan(0);
    const fd = openSync(bad, 'r+');
    writeSync(fd, Buffer.alloc(4096, 0xa5), 0, 4096, pblk * 4096);
    closeSync(fd);
    const d = await startDaemon({ volumes: [{ name: 'vm', mode: 'raw', size: '256MiB', disk: bad }] }, { dir: tempDir('blockgate-vm-stored-d-') });
    all.push(d);
    const r = await runGuest({ port: d.port, exportName: 'vm', script: guestScript, args: ['verify'], timeoutMs: BOOT_TIMEOUT_MS });
    console.log(`vm control boot: exit ${r.exitCode}, wall ${r.wallMs} ms`);
    expect(r.exitCode, describeRun(r)).toBe(1);
    expect(r.console).toContain('VERIFY FAILED: manifest mismatch');
    expect(r.console).not.toContain('VERIFY OK');
    await d.stop();
  }, BOOT_TIMEOUT_MS + 60_000);
});
