// blockgate as seen by the Linux kernel NBD client (nbd.ko + nbd-client) in a
// qemu VM (test/harness/vm). A raw volume backed by a file:
//   boot 1: attach, mkfs.ext4, mount, write files and a checksum manifest,
//           sync, re-read uncached, umount, e2fsck -f clean, disconnect
//   boot 2: re-attach (a new connection), e2fsck -f clean, mount read-only,
//           every file matches the manifest, disconnect
//   host:   after the daemon stops, the image file is a clean ext4
//           (e2fsck -fn) whose files (read with debugfs) match the manifest.
// BLOCKGATE_VM_PEER=nbdkit runs the same steps against nbdkit's file plugin,
// to tell a harness problem from a server problem.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, tempDir, repoRoot, type DaemonHandle } from '../harness/daemon.js';
import { startNbdkit, type NbdkitHandle } from '../harness/vm/nbdkit.js';
import { buildInitramfs, describeRun, parseManifest, runGuest, taggedLines, vmSkipReason, type GuestResult } from '../harness/vm/index.js';

const peer = process.env.BLOCKGATE_VM_PEER === 'nbdkit' ? 'nbdkit' : 'blockgate';
const skip = vmSkipReason(peer === 'nbdkit' ? ['nbdkit', 'debugfs'] : ['debugfs']);
const guestScript = join(import.meta.dirname, 'guest-ext4.sh');
const SIZE = 512 << 20;
const BOOT_TIMEOUT_MS = 240_000;


describe.skipIf(skip !== undefined)(`kernel NBD client in a VM against ${peer}`, () => {
  let dir: string;
  let image: string;
  let daemon: DaemonHandle | undefined;
  let nbdkit: NbdkitHandle | undefined;
  let port: number;
  let written: Map<string, string>;

  const boot = async (mode: 'write' | 'verify'): Promise<GuestResult> => {
    const r = await runGuest({ port, exportName: 'vm', script: guestScript, args: [mode], timeoutMs: BOOT_TIMEOUT_MS });
    console.log(`vm ${mode} boot: exit ${r.exitCode}, kernel boot ${r.bootSeconds ?? '?'} s (guest clock), wall ${r.wallMs} ms, accel ${r.accel}`);
    return r;
  };
  const serverLog = (): string => (daemon ? `\n--- daemon output (tail)\n${daemon.output().split('\n').slice(-40).join('\n')}` : '');

  beforeAll(async () => {
    buildInitramfs();
    dir = tempDir('blockgate-vm-');
    image = join(dir, 'vm.img');
    if (peer === 'nbdkit') {
      execFileSync('truncate', ['-s', String(SIZE), image]);
      nbdkit = await startNbdkit('vm', ['file', image]);
      port = nbdkit.port;
    } else {
      if (!existsSync(join(repoRoot, 'dist', 'cli', 'main.js'))) {
        throw new Error('dist/cli/main.js is missing: run `npm run build` (scripts/test.sh does)');
      }
      daemon = await startDaemon({ volumes: [{ name: 'vm', mode: 'raw', size: '512MiB', disk: image }] }, { dir });
      port = daemon.port;
      expect(port, 'daemon reported no TCP listener').toBeGreaterThan(0);
    }
  });

  afterAll(async () => {
    await daemon?.kill();
    await nbdkit?.stop();
  });

  it('boot 1: mkfs.ext4, write files, fsck clean, disconnect', async () => {
    const r = await boot('write');
    expect(r.exitCode, describeRun(r) + serverLog()).toBe(0);
    expect(r.console).toContain('WRITE OK');
    expect(taggedLines(r.console, 'SIZE ')).toEqual([String(SIZE)]);
    written = parseManifest(taggedLines(r.console, 'SHA256 '));
    expect(written.size, 'manifest lines from boot 1').toBe(203);
  }, BOOT_TIMEOUT_MS + 60_000);

  it('boot 2: re-attach, fsck clean, files match the manifest', async () => {
    expect(written, 'boot 1 did not pass').toBeDefined();
    const r = await boot('verify');
    expect(r.exitCode, describeRun(r) + serverLog()).toBe(0);
    expect(r.console).toContain('VERIFY OK');
    expect(parseManifest(taggedLines(r.console, 'SHA256 '))).toEqual(written);
  }, BOOT_TIMEOUT_MS + 60_000);

  it('host: after the server stops, the image is a clean ext4 holding the same files', async () => {
    expect(written, 'boot 1 did not pass').toBeDefined();
    if (daemon) {
      const code = await daemon.stop();
      expect(code, `daemon exit status on SIGTERM${serverLog()}`).toBe(0);
      const errors = daemon.output().split('\n').filter((l) => /"level":"(error|fatal)"/.test(l));
      expect(errors, 'error records in the daemon log').toEqual([]);
    }
    await nbdkit?.stop();
    nbdkit = undefined;
    const fsck = spawnSync('e2fsck', ['-fn', image], { encoding: 'utf8' });
    expect(fsck.status, `e2fsck -fn ${image}:\n${fsck.stdout}${fsck.stderr}`).toBe(0);
    const label = execFileSync('e2label', [image], { encoding: 'utf8' }).trim();
    expect(label).toBe('blockgate-vm');
    for (const name of ['small.txt', 'random.bin', 'zeros.bin', 'tree/f1', 'tree/f200']) {
      const data = execFileSync('debugfs', ['-R', `cat /${name}`, image], { maxBuffer: 64 << 20, stdio: ['ignore', 'pipe', 'ignore'] });
      expect(createHash('sha256').update(data).digest('hex'), `${name} read from the image on the host`).toBe(written.get(name));
    }
  }, 60_000);
});
