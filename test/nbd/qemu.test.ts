// qemu-img and qemu-io (qemu's own NBD client) against a real blockgate
// daemon serving every volume as a raw, a stored and a cached export
// (test/nbd/modes.ts), each case per mode: convert in and out, compare, map,
// and qemu-io's sync/aio patterns, write -z (with and without unmap),
// discard, FUA and flush, checked in each mode's durable copy (disk file, or
// the store's live root for cached).
import { closeSync, ftruncateSync, openSync, rmSync, writeSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { allocatedBytes, expectDaemonAlive, randomFile, requireTools, run, runOk, sha256File, type RunResult } from '../harness/nbd-tools.js';
import { MODES, MODE_CAPS, startModesDaemon, type Mode, type ModesDaemon } from './modes.js';

const MiB = 1024 * 1024;

interface QemuMapEntry { start: number; length: number; zero: boolean; data: boolean; present?: boolean }

let m: ModesDaemon;

beforeAll(async () => {
  requireTools('qemu-img', 'qemu-io');
  m = await startModesDaemon('blockgate-qemu-', [
    { name: 'conv', size: '96MiB' },
    { name: 'io', size: '64MiB' },
    { name: 'small', size: '8MiB' },
  ]);
});

afterEach(() => expectDaemonAlive(m.d));

afterAll(async () => {
  if (m) expect(await m.close()).toBe(0);
});

function qemuIo(uri: string, ...cmds: string[]): Promise<RunResult> {
  return run('qemu-io', ['-f', 'raw', uri, ...cmds.flatMap((c) => ['-c', c])]);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function qemuMap(uri: string): Promise<QemuMapEntry[]> {
  return JSON.parse((await runOk('qemu-img', ['map', '--output=json', '-f', 'raw', uri])).stdout) as QemuMapEntry[];
}

describe.each(MODES)('%s export', (mode: Mode) => {
  /** Where a mode's map shows data: without extents (stored) everything is one data extent (modes.ts: MODE_CAPS). */
  const extents = MODE_CAPS[mode].extents;

  describe('qemu-img', () => {
    it('convert a partly sparse image into the export, compare, map, and convert it back out', async () => {
      // 96 MiB: random data with a 32 MiB hole in the middle and a zero tail.
      const src = join(m.dir, `src-${mode}.img`);
      randomFile(src, 40 * MiB);
      const fd = openSync(src, 'r+');
      try {
        ftruncateSync(fd, 96 * MiB);
        const tail = randomBytes(8 * MiB);
        writeSync(fd, tail, 0, tail.length, 72 * MiB);
      } finally {
        closeSync(fd);
      }
      const srcHash = await sha256File(src);
      await runOk('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', src, m.uri(mode, 'conv')], { timeoutMs: 110_000 });
      expect(sha256(await m.content(mode, 'conv'))).toBe(srcHash); // (cached: drained, so the map below is of the live root)

      const cmp = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, m.uri(mode, 'conv')]);
      expect(cmp.code, cmp.stderr).toBe(0);
      expect(cmp.stdout).toMatch(/Images are identical/);

      // The export's allocation as qemu sees it: data, zero hole, data, zero tail.
      const map = await qemuMap(m.uri(mode, 'conv'));
      const covered = map.reduce((a, e) => a + e.length, 0);
      expect(covered).toBe(96 * MiB);
      const at = (off: number): QemuMapEntry => map.find((e) => off >= e.start && off < e.start + e.length)!;
      const hole = extents ? { data: false, zero: true } : { data: true, zero: false };
      expect(at(0)).toMatchObject({ data: true, zero: false });
      expect(at(40 * MiB - 1)).toMatchObject({ data: true, zero: false });
      expect(at(40 * MiB)).toMatchObject(hole);
      expect(at(71 * MiB)).toMatchObject(hole);
      expect(at(72 * MiB)).toMatchObject({ data: true, zero: false });
      expect(at(80 * MiB)).toMatchObject(hole);
      // qemu-img convert skipped/zeroed the holes: the volume's file is sparse (cached: the map above).
      if (mode !== 'cached') expect(await allocatedBytes(m.diskPath(mode, 'conv'))).toBeLessThan(60 * MiB);

      // Out again, to a new qcow2 and to raw.
      const outRaw = join(m.dir, `out-${mode}.img`);
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'raw', m.uri(mode, 'conv'), outRaw], { timeoutMs: 110_000 });
      expect(await sha256File(outRaw)).toBe(srcHash);
      expect(await allocatedBytes(outRaw)).toBeLessThan(60 * MiB);
      const outQcow = join(m.dir, `out-${mode}.qcow2`);
      await runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'qcow2', m.uri(mode, 'conv'), outQcow], { timeoutMs: 110_000 });
      const cmp2 = await run('qemu-img', ['compare', '-f', 'qcow2', '-F', 'raw', outQcow, m.uri(mode, 'conv')]);
      expect(cmp2.code, cmp2.stderr).toBe(0);

      // compare notices a difference.
      await runOk('qemu-io', ['-f', 'raw', m.uri(mode, 'conv'), '-c', 'write -P 0x99 50M 512']);
      const cmp3 = await run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', src, m.uri(mode, 'conv')]);
      expect(cmp3.code).toBe(1);
      expect(cmp3.stdout).toMatch(/Content mismatch at offset 52428800/);
      rmSync(outRaw);
      rmSync(outQcow);
      rmSync(src);
    });

    it('qemu-img info sees the export size', async () => {
      const r = await runOk('qemu-img', ['info', '--output=json', '-f', 'raw', m.uri(mode, 'small')]);
      expect((JSON.parse(r.stdout) as { 'virtual-size': number })['virtual-size']).toBe(8 * MiB);
    });
  });

  describe('qemu-io', () => {
    it('write -P / read -P, and a wrong pattern is detected', async () => {
      const ok = await qemuIo(m.uri(mode, 'io'), 'write -P 0xab 0 1M', 'read -P 0xab 0 1M', 'write -P 0x3c 1048577 4095', 'read -P 0x3c 1048577 4095', 'read -P 0xab 0 1M');
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      expect(ok.stdout).not.toMatch(/Pattern verification failed|failed/);
      const bad = await qemuIo(m.uri(mode, 'io'), 'read -P 0xac 0 1M');
      expect(bad.code).toBe(1);
      expect(bad.stdout).toMatch(/Pattern verification failed at offset 0/);
      const disk = await m.content(mode, 'io');
      expect(disk.subarray(0, MiB).equals(Buffer.alloc(MiB, 0xab))).toBe(true);
      expect(disk.subarray(MiB + 1, MiB + 1 + 4095).equals(Buffer.alloc(4095, 0x3c))).toBe(true);
    });

    it('aio_write / aio_read patterns in flight together, aio_flush', async () => {
      const cmds: string[] = [];
      for (let i = 0; i < 16; i++) cmds.push(`aio_write -P 0x${(0x40 + i).toString(16)} ${8 + i}M 256k`);
      cmds.push('aio_flush');
      for (let i = 0; i < 16; i++) cmds.push(`aio_read -P 0x${(0x40 + i).toString(16)} ${8 + i}M 256k`);
      cmds.push('aio_flush');
      const r = await qemuIo(m.uri(mode, 'io'), ...cmds);
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).not.toMatch(/failed/);
      expect(r.stdout.match(/^read 262144\/262144 bytes/gm)).toHaveLength(16);
      expect(r.stdout.match(/^wrote 262144\/262144 bytes/gm)).toHaveLength(16);
    });

    it('write -z, write -z -u, discard, write -f (FUA), flush — with the effect on data and allocation', async () => {
      const r = await qemuIo(m.uri(mode, 'io'),
        'write -P 0x11 32M 8M',
        'write -z 33M 1M', // zero, keep allocation (NO_HOLE)
        'write -z -u 35M 1M', // zero, may unmap
        'discard 37M 1M',
        'write -f -P 0x22 39M 64k', // FUA
        'flush',
        'read -P 0 33M 1M', 'read -P 0 35M 1M', 'read -P 0x11 34M 1M', 'read -P 0x11 36M 1M', 'read -P 0x22 39M 64k', 'read -P 0x11 38M 1M');
      expect(r.code, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).not.toMatch(/failed/);
      // Discarded range: unspecified by NBD, but every mode reads it back as zeros
      // (raw punches a hole; stored and cached log TRIM as "reads as zeros":
      // docs/stored-volumes.md, docs/cached-volumes.md).
      const after = await qemuIo(m.uri(mode, 'io'), 'read -P 0 37M 1M');
      expect(after.code, after.stdout).toBe(0);
      // A cached volume reports its log's zeroed ranges as data until they are uploaded
      // (docs/cached-volumes.md): content() waits for that, and checks the live root.
      const disk = await m.content(mode, 'io');
      const map = await qemuMap(m.uri(mode, 'io'));
      const at = (off: number): QemuMapEntry => map.find((e) => off >= e.start && off < e.start + e.length)!;
      const hole = extents ? { data: false, zero: true } : { data: true, zero: false };
      expect(at(32 * MiB)).toMatchObject({ data: true });
      expect(at(35 * MiB)).toMatchObject(hole);
      expect(at(37 * MiB)).toMatchObject(hole);
      expect(at(38 * MiB)).toMatchObject({ data: true });
      expect(disk.subarray(39 * MiB, 39 * MiB + 65536).equals(Buffer.alloc(65536, 0x22))).toBe(true);
      expect(disk.subarray(33 * MiB, 34 * MiB).equals(Buffer.alloc(MiB))).toBe(true);
    });

    it('reading past the end fails and the daemon is unaffected', async () => {
      const r = await qemuIo(m.uri(mode, 'small'), 'read 7M 2M');
      expect(r.code).toBe(1);
      expect(r.stdout + r.stderr).toMatch(/read failed/);
      const ok = await qemuIo(m.uri(mode, 'small'), 'write -P 0x5 7M 1M', 'read -P 0x5 7M 1M');
      expect(ok.code, ok.stdout).toBe(0);
    });
  });
});
