// RawVolume specifics the compliance suite cannot know, on plain files: space
// really freed (st_blocks) by trim/zero, SEEK_DATA extents, file
// creation/extension/refusal rules. ENOSPC (tmpfs) and block devices (loop)
// need root: test/raw-volume/tmpfs-loop.test.ts.
import { mkdir, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';

import type { Extent } from '../../src/block-device/block-device.js';
import { isBlockgateError } from '../../src/errors.js';
import * as native from '../../src/native/index.js';
import { RawVolume } from '../../src/volumes/raw.js';
import { allocated, expectConfigError, fill, openVol } from '../raw-volume/helpers.js';
import { tempDir } from '../harness/cleanup.js';

const MiB = 1024 * 1024;
const NO_FUA = { fua: false };

let dir: string;
let seq = 0;
beforeAll(() => {
  dir = tempDir('blockgate-raw-unit-');
});

function fresh(): string {
  return join(dir, `v${seq++}.img`);
}

/** [start, end, hole] runs of an extent list starting at `offset`. */
function runs(offset: number, ex: Extent[]): Array<[number, number, boolean]> {
  const out: Array<[number, number, boolean]> = [];
  let pos = offset;
  for (const e of ex) {
    out.push([pos, pos + e.length, e.hole]);
    pos += e.length;
  }
  return out;
}

describe('native addon', () => {
  it('is built and loads', () => {
    expect(native.nativeAvailable()).toBe(true);
  });

  it('rejects with errno codes the caller can test', async () => {
    const path = fresh();
    await writeFile(path, 'x');
    const v = await openVol({ path, readOnly: true });
    const fd = (v as unknown as { fd: number }).fd;
    const err = await native.blockDeviceSize(fd).then(() => undefined, (e: unknown) => e);
    expect(native.hasErrorCode(err, 'ENOTTY')).toBe(true);
    expect((err as native.NativeError).errno).toBe(-25);
    expect((err as native.NativeError).syscall).toBe('ioctl(BLKGETSIZE64)');
    expect(await native.seekData(fd, 0)).toBe(0);
    expect(await native.seekHole(fd, 0)).toBe(1);
    expect(await native.seekData(fd, 5)).toBe(-1);
    await expect(native.punchHole(fd, 0, 1)).rejects.toMatchObject({ code: 'EBADF' });
    const b = Buffer.alloc(4, 9);
    expect(native.preadNoWait(fd, b, 1, 3, 0)).toBe(1); // short: the file holds 1 byte
    expect(b.toString('latin1')).toBe('\x09x\x09\x09');
    expect(native.preadNoWait(fd, b, 0, 4, 100)).toBe(0); // EOF
    expect(() => native.preadNoWait(fd, b, 2, 3, 0)).toThrow(/out of range/);
    expect(() => native.pwriteNoWait(fd, b, 0, 1, 0)).toThrow(expect.objectContaining({ code: expect.stringMatching(/EBADF|EOPNOTSUPP/) }));
    expect(() => native.punchHole(fd, -1, 1)).toThrow(/offset/);
  });
});

describe('RawVolume on a sparse file', () => {
  it('creates a missing file sparse at the configured size', async () => {
    const path = fresh();
    const v = await openVol({ path, size: '1GiB' });
    expect(v.capabilities().size).toBe(1024 * MiB);
    expect((await stat(path)).size).toBe(1024 * MiB);
    expect(await allocated(path)).toBeLessThan(MiB);
    expect(v.capabilities()).toMatchObject({
      minBlockSize: 1, preferredBlockSize: 4096, maxBlockSize: 32 * MiB,
      multiConn: true, fua: 'native', zero: 'native', fastZero: true, trim: true, extents: true, cache: 'native', flush: true,
    });
  });

  it('trim and zero(mayTrim) give space back (du drops)', async () => {
    const path = fresh();
    const v = await openVol({ path, size: 64 * MiB });
    await v.write(fill(16 * MiB, 0x5a), 0, NO_FUA);
    await v.flush();
    const full = await allocated(path);
    expect(full).toBeGreaterThanOrEqual(16 * MiB);

    await v.trim(0, 8 * MiB, NO_FUA);
    const afterTrim = await allocated(path);
    expect(afterTrim).toBeLessThanOrEqual(full - 8 * MiB + 64 * 1024);

    await v.zero(8 * MiB, 4 * MiB, { fua: false, mayTrim: true, fast: false });
    const afterZero = await allocated(path);
    expect(afterZero).toBeLessThanOrEqual(afterTrim - 4 * MiB + 64 * 1024);

    // NO_HOLE zero keeps (or makes) the range allocated, and reads as zeros
    await v.zero(12 * MiB, 4 * MiB, { fua: true, mayTrim: false, fast: true });
    expect(await allocated(path)).toBeGreaterThanOrEqual(4 * MiB - 64 * 1024);
    const back = Buffer.alloc(16 * MiB, 1);
    await v.read(back, 0);
    expect(back.every((b) => b === 0)).toBe(true);
  });

  it('extents follow writes, trims and zeroes', async () => {
    const path = fresh();
    const v = await openVol({ path, size: 16 * MiB });
    expect(runs(0, await v.extents(0, 16 * MiB))).toEqual([[0, 16 * MiB, true]]);

    await v.write(fill(MiB, 1), 2 * MiB, NO_FUA);
    await v.write(fill(MiB, 2), 8 * MiB, NO_FUA);
    expect(runs(0, await v.extents(0, 16 * MiB))).toEqual([
      [0, 2 * MiB, true], [2 * MiB, 3 * MiB, false], [3 * MiB, 8 * MiB, true], [8 * MiB, 9 * MiB, false], [9 * MiB, 16 * MiB, true],
    ]);
    // holes are hole+zero; data is neither
    const ex = await v.extents(0, 16 * MiB);
    for (const e of ex) expect(e.zero).toBe(e.hole);

    await v.trim(2 * MiB, 512 * 1024, NO_FUA);
    await v.zero(8 * MiB + 512 * 1024, 512 * 1024, { fua: false, mayTrim: true, fast: false });
    expect(runs(0, await v.extents(0, 16 * MiB))).toEqual([
      [0, 2 * MiB + 512 * 1024, true], [2 * MiB + 512 * 1024, 3 * MiB, false], [3 * MiB, 8 * MiB, true],
      [8 * MiB, 8 * MiB + 512 * 1024, false], [8 * MiB + 512 * 1024, 16 * MiB, true],
    ]);

    // a query inside a run is clipped to the query
    expect(runs(100, await v.extents(100, 50))).toEqual([[100, 150, true]]);
    expect(runs(2 * MiB + 512 * 1024 + 7, await v.extents(2 * MiB + 512 * 1024 + 7, 10))).toEqual([
      [2 * MiB + 512 * 1024 + 7, 2 * MiB + 512 * 1024 + 17, false],
    ]);
  });

  it('extends an existing shorter file, keeping its data', async () => {
    const path = fresh();
    await writeFile(path, fill(MiB, 7));
    const v = await openVol({ path, size: 4 * MiB });
    expect(v.capabilities().size).toBe(4 * MiB);
    expect((await stat(path)).size).toBe(4 * MiB);
    const b = Buffer.alloc(4 * MiB);
    await v.read(b, 0);
    expect(b.subarray(0, MiB).every((x) => x === 7)).toBe(true);
    expect(b.subarray(MiB).every((x) => x === 0)).toBe(true);
    expect(runs(0, await v.extents(0, 4 * MiB)).at(-1)).toEqual([MiB, 4 * MiB, true]);
  });

  it('without a size, serves an existing file at its own size', async () => {
    const path = fresh();
    await truncate(path, 0).catch(() => undefined);
    await writeFile(path, Buffer.alloc(0));
    await truncate(path, 3 * MiB + 1);
    const v = await openVol({ path });
    expect(v.capabilities().size).toBe(3 * MiB + 1);
  });

  it('refuses a file larger than the configured size', async () => {
    const path = fresh();
    await writeFile(path, Buffer.alloc(0));
    await truncate(path, 2 * MiB);
    await expectConfigError(RawVolume.open({ path, size: MiB }), /larger than the configured size/);
    expect((await stat(path)).size).toBe(2 * MiB); // untouched
  });

  it('refuses bad configurations with ERR_CONFIG', async () => {
    await expectConfigError(RawVolume.open({ path: fresh() }), /no size is configured/);
    await expectConfigError(RawVolume.open({ path: fresh(), size: MiB, readOnly: true }), /does not exist/);
    await expectConfigError(RawVolume.open({ path: fresh(), size: 'lots' }), /invalid size/);
    await expectConfigError(RawVolume.open({ path: fresh(), size: 0 }), /invalid size/);
    const sub = join(dir, `d${seq++}`);
    await mkdir(sub);
    await expectConfigError(RawVolume.open({ path: sub, size: MiB }), /not a regular file or block device/);
    await expectConfigError(RawVolume.open({ path: join(sub, 'missing', 'x.img'), size: MiB }), /cannot open/);
    const short = fresh();
    await writeFile(short, 'abc');
    await expectConfigError(RawVolume.open({ path: short, size: MiB, readOnly: true }), /smaller than the configured size/);
  });

  it('read-only volumes advertise no write-side operations', async () => {
    const path = fresh();
    await writeFile(path, fill(8192, 3));
    const v = await openVol({ path, readOnly: true });
    expect(v.capabilities()).toMatchObject({ readOnly: true, fua: 'none', zero: 'none', trim: false, fastZero: false, extents: true });
    const b = Buffer.alloc(8192);
    await v.read(b, 0);
    expect(b.every((x) => x === 3)).toBe(true);
  });

  it('falls back to writing zeros when no fallocate mode works, and fast zero says ERR_NOT_SUPPORTED', async () => {
    const path = fresh();
    const v = await openVol({ path, size: 4 * MiB, unsupported: ['punchHole', 'zeroRange', 'allocate'] });
    expect(v.capabilities().fastZero).toBe(false);
    await v.write(fill(MiB, 9), 0, NO_FUA);
    const err = await v.zero(0, 4096, { fua: false, mayTrim: true, fast: true }).then(() => undefined, (e: unknown) => e);
    expect(isBlockgateError(err, 'ERR_NOT_SUPPORTED')).toBe(true);
    await v.zero(1, 3 * MiB, { fua: false, mayTrim: true, fast: false });
    const b = Buffer.alloc(MiB);
    await v.read(b, 0);
    expect(b[0]).toBe(9);
    expect(b.subarray(1).every((x) => x === 0)).toBe(true);
    await v.trim(0, MiB, NO_FUA); // advisory: succeeds without effect
    await v.read(b, 0);
    expect(b[0]).toBe(9);
  });

  it('small reads served from the page cache (RWF_NOWAIT) and from the thread pool agree', async () => {
    const path = fresh();
    const fast = await openVol({ path, size: 4 * MiB });
    const data = Buffer.alloc(3 * MiB);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31 + 7) & 0xff;
    await fast.write(Buffer.from(data), 0, NO_FUA);
    await fast.flush();
    const slow = await openVol({ path, readOnly: true, nowaitMax: 0 });
    // drop the file's pages so that some RWF_NOWAIT reads find nothing cached
    await native.fadvise((fast as unknown as { fd: number }).fd, 0, 0, native.FADV.DONTNEED);
    for (const [off, len] of [[0, 4096], [1, 65536], [MiB - 3, 10], [2 * MiB + 4000, 30_000], [3 * MiB - 2, 2]] as const) {
      const a = Buffer.alloc(len);
      const b = Buffer.alloc(len);
      await fast.read(a, off);
      await slow.read(b, off);
      expect(a.equals(data.subarray(off, off + len)), `fast ${off}+${len}`).toBe(true);
      expect(b.equals(a), `slow ${off}+${len}`).toBe(true);
    }
  });

  it('requests after close fail with ERR_SHUTTING_DOWN; close is idempotent', async () => {
    const v = await RawVolume.open({ path: fresh(), size: MiB });
    await v.close();
    await v.close();
    const err = await v.write(Buffer.alloc(1), 0, NO_FUA).then(() => undefined, (e: unknown) => e);
    expect(isBlockgateError(err, 'ERR_SHUTTING_DOWN')).toBe(true);
  });
});
