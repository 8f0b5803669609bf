// RawVolume where it needs root: ENOSPC on a private 1 MiB tmpfs (tmpfs also
// has PUNCH_HOLE but no ZERO_RANGE, a real instance of that fallback) and
// block devices (loop devices over sparse files), including the BlockDevice
// compliance suite on a loop device. Without root (or without mount/losetup)
// these skip visibly; under CI=true they fail instead (test/harness/prereq.ts).
import { mkdir, rm, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isBlockgateError } from '../../src/errors.js';
import { RawVolume } from '../../src/volumes/raw.js';
import { allocated, expectConfigError, fill, openVol } from './helpers.js';
import { blockDeviceCompliance } from '../block-device/compliance.js';
import { atFileEnd, tempDir } from '../harness/cleanup.js';
import { skipReason } from '../harness/prereq.js';
import { runOk } from '../harness/process.js';

const MiB = 1024 * 1024;
const NO_FUA = { fua: false };
const dir = tempDir('bg-raw-root-');
let seq = 0;

function errText(err: unknown): string {
  return (err as Error).message.split('\n').filter((l) => l.startsWith('stderr:')).join(' ') || String(err);
}

// --- tmpfs: mounted once for the file, unmounted when it ends.
const mnt = join(dir, 'tmpfs');
const tmpfsMissing = await (async (): Promise<string | undefined> => {
  try {
    await mkdir(mnt);
    await runOk('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'blockgate-test', mnt]);
  } catch (err) {
    return `a private tmpfs mount (root): mount -t tmpfs failed: ${errText(err)}`;
  }
  atFileEnd(() => runOk('umount', [mnt]).then(() => undefined));
  return undefined;
})();

describe.skipIf(skipReason(tmpfsMissing) !== undefined)('RawVolume on a tiny tmpfs', () => {
  it('a write past the free space fails with ERR_NO_SPACE', async () => {
    const v = await openVol({ path: join(mnt, 'big.img'), size: 8 * MiB });
    const err = await v.write(fill(4 * MiB, 1), 0, NO_FUA).then(() => undefined, (e: unknown) => e);
    expect(isBlockgateError(err, 'ERR_NO_SPACE'), String(err)).toBe(true);
    await v.close();
    await rm(join(mnt, 'big.img'));
  });

  it('zero without ZERO_RANGE: punch hole (+ allocate for NO_HOLE)', async () => {
    const path = join(mnt, 'z.img');
    const v = await openVol({ path, size: 4 * MiB });
    await v.write(fill(256 * 1024, 4), 0, NO_FUA);
    await v.zero(0, 128 * 1024, { fua: false, mayTrim: false, fast: true });
    await v.zero(128 * 1024, 128 * 1024, { fua: false, mayTrim: true, fast: true });
    const b = Buffer.alloc(256 * 1024, 1);
    await v.read(b, 0);
    expect(b.every((x) => x === 0)).toBe(true);
    expect(await allocated(path)).toBeLessThanOrEqual(128 * 1024 + 4096);
  });
});

// --- loop devices over sparse files in the file's temp dir; each is detached
// when the test file ends (before the dir is removed).
async function makeLoop(size: number): Promise<{ dev: string; file: string }> {
  const file = join(dir, `loop-${seq++}.img`);
  await writeFile(file, Buffer.alloc(0));
  await truncate(file, size);
  const { stdout } = await runOk('losetup', ['--find', '--show', file]);
  const dev = stdout.trim();
  atFileEnd(() => runOk('losetup', ['-d', dev]).then(() => undefined));
  return { dev, file };
}

const loopMissing = await makeLoop(MiB).then(() => undefined, (err: unknown) => `a loop device (root): losetup failed: ${errText(err)}`);
const noLoop = skipReason(loopMissing) !== undefined;

describe.skipIf(noLoop)('RawVolume on a loop block device', () => {
  it('takes its size from the device; serves a prefix; refuses more', async () => {
    const l = await makeLoop(32 * MiB);
    const v = await openVol({ path: l.dev });
    expect(v.capabilities()).toMatchObject({ size: 32 * MiB, extents: false, zero: 'native', trim: true, multiConn: true });
    await v.close();
    const p = await openVol({ path: l.dev, size: 16 * MiB });
    expect(p.capabilities().size).toBe(16 * MiB);
    await p.close();
    await expectConfigError(RawVolume.open({ path: l.dev, size: 33 * MiB }), /exceeds the block device size/);
  });

  it('is opened exclusively (a second open fails with ERR_CONFIG / EBUSY)', async () => {
    const l = await makeLoop(8 * MiB);
    await openVol({ path: l.dev });
    await expectConfigError(RawVolume.open({ path: l.dev }), /in use/);
  });

  it('zero and trim reach the backing file (du drops), unaligned edges included', async () => {
    const l = await makeLoop(32 * MiB);
    const v = await openVol({ path: l.dev });
    await v.write(fill(16 * MiB, 0x33), 0, NO_FUA);
    await v.flush();
    const full = await allocated(l.file);
    expect(full).toBeGreaterThanOrEqual(16 * MiB);
    await v.trim(0, 4 * MiB, NO_FUA);
    await v.zero(4 * MiB - 100, 4 * MiB + 200, { fua: true, mayTrim: true, fast: false });
    await v.zero(12 * MiB + 1, 1000, { fua: false, mayTrim: false, fast: false });
    await v.flush();
    expect(await allocated(l.file)).toBeLessThan(full - 3 * MiB);
    const b = Buffer.alloc(16 * MiB);
    await v.read(b, 0);
    // trimmed range: zeros or old data (loop discard punches holes: zeros)
    expect(b.subarray(4 * MiB - 100, 8 * MiB + 100).every((x) => x === 0)).toBe(true);
    expect(b.subarray(8 * MiB + 100, 12 * MiB + 1).every((x) => x === 0x33)).toBe(true);
    expect(b.subarray(12 * MiB + 1, 12 * MiB + 1001).every((x) => x === 0)).toBe(true);
    expect(b.subarray(12 * MiB + 1001).every((x) => x === 0x33)).toBe(true);
  });
});

if (!noLoop) {
  const paths = new WeakMap<object, string>();
  blockDeviceCompliance('RawVolume (loop block device)', {
    async create(size) {
      const l = await makeLoop(size);
      const v = await RawVolume.open({ path: l.dev });
      paths.set(v, l.dev);
      return v;
    },
    async reopen(device, { readOnly }) {
      const dev = paths.get(device)!;
      const v = await RawVolume.open({ path: dev, readOnly });
      paths.set(v, dev);
      return v;
    },
  }, { size: 48 * MiB });
}
