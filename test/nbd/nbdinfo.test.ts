// nbdinfo (libnbd) against a real blockgate daemon serving every volume as a
// raw, a stored and a cached export (test/nbd/modes.ts): export listing with
// descriptions, sizes, block-size constraints, every --can/--is flag, and
// --map after writes, trims and zeroes; plus a read-only raw volume
// (readOnly is a raw-volume setting: src/daemon/config.ts).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nbdshOk, requireTools, run, runOk } from '../harness/nbd-tools.js';
import { MODES, MODE_CAPS, exportName, startModesDaemon, type Mode, type ModesDaemon } from './modes.js';

const MiB = 1024 * 1024;
const HOLE_ZERO = { type: 3, description: 'hole,zero' };
const DATA = { type: 0, description: 'data' };

interface MapEntry { offset: number; length: number; type: number; description: string }

let m: ModesDaemon;

beforeAll(async () => {
  requireTools('nbdinfo', 'nbdsh');
  m = await startModesDaemon('blockgate-nbdinfo-', [
    { name: 'alpha', size: '256MiB', description: 'First volume (alpha)' },
    { name: 'beta', size: '64MiB', description: 'Second volume: beta' },
    { name: 'mapped', size: '32MiB' },
  ], {
    extra: (dir) => {
      mkdirSync(join(dir, 'disks'), { recursive: true });
      writeFileSync(join(dir, 'disks', 'ro.img'), Buffer.alloc(8 * MiB, 0x5a));
      return [{ name: 'ro', mode: 'raw', disk: join(dir, 'disks', 'ro.img'), readOnly: true }];
    },
  });
});

afterAll(async () => {
  if (m) expect(await m.close()).toBe(0);
});

async function info(name: string): Promise<Record<string, unknown>> {
  const r = await runOk('nbdinfo', ['--json', m.d.uri(name)]);
  const doc = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>>; structured: boolean; TLS: boolean; protocol: string };
  expect(doc.protocol).toBe('newstyle-fixed');
  expect(doc.structured).toBe(true);
  expect(doc.TLS).toBe(false);
  expect(doc.exports).toHaveLength(1);
  return doc.exports[0]!;
}

async function flag(kind: '--can' | '--is', what: string, name: string): Promise<boolean> {
  const r = await run('nbdinfo', [kind, what, m.d.uri(name)]);
  if (r.code !== 0 && r.code !== 2) throw new Error(`nbdinfo ${kind} ${what} failed (${r.code}): ${r.stderr}`);
  return r.code === 0;
}

async function map(name: string): Promise<MapEntry[]> {
  const r = await runOk('nbdinfo', ['--map', '--json', m.d.uri(name)]);
  return JSON.parse(r.stdout) as MapEntry[];
}

describe('nbdinfo: the export list', () => {
  it('--list shows every export with its description, in config order', async () => {
    const r = await runOk('nbdinfo', ['--list', '--json', `nbd://${m.d.host}:${m.d.port}`]);
    const doc = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>> };
    const names = ['alpha', 'beta', 'mapped'].flatMap((b) => MODES.map((mode) => exportName(mode, b)));
    expect(doc.exports.map((e) => e['export-name'])).toEqual([...names, 'ro']);
    const byName = Object.fromEntries(doc.exports.map((e) => [e['export-name'], e]));
    for (const mode of MODES) {
      expect(byName[exportName(mode, 'alpha')]!.description).toBe('First volume (alpha)');
      expect(byName[exportName(mode, 'beta')]!.description).toBe('Second volume: beta');
      expect(byName[exportName(mode, 'mapped')]!.description).toBeUndefined();
      expect(byName[exportName(mode, 'alpha')]!['export-size']).toBe(256 * MiB);
      expect(byName[exportName(mode, 'beta')]!['export-size']).toBe(64 * MiB);
    }
    expect(byName.ro!.description).toBeUndefined();
    expect(byName.ro!['export-size']).toBe(8 * MiB);
    // Human-readable form too.
    const text = await runOk('nbdinfo', ['--list', `nbd://${m.d.host}:${m.d.port}`]);
    for (const mode of MODES) {
      expect(text.stdout).toMatch(new RegExp(`export="${mode}-alpha":\\s*\\n\\s*description: First volume \\(alpha\\)`));
      expect(text.stdout).toMatch(new RegExp(`export="${mode}-beta":`));
    }
  });

  it('the empty export name selects the first volume', async () => {
    const r = await runOk('nbdinfo', ['--size', `nbd://${m.d.host}:${m.d.port}/`]);
    expect(r.stdout.trim()).toBe(String(256 * MiB));
  });

  it('an unknown export name is refused', async () => {
    const r = await run('nbdinfo', [m.d.uri('no-such-export')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no-such-export|unknown|not found|export/i);
  });
});

describe.each(MODES)('nbdinfo: %s export', (mode: Mode) => {
  const name = (base: string): string => exportName(mode, base);

  it('reports size, block sizes (1 / 4096 / 32 MiB) and the base:allocation context', async () => {
    const e = await info(name('alpha'));
    expect(e['export-name']).toBe(name('alpha'));
    expect(e['export-size']).toBe(256 * MiB);
    expect(e.block_size_minimum).toBe(1);
    expect(e.block_size_preferred).toBe(4096);
    expect(e.block_size_maximum).toBe(32 * MiB);
    expect(e.contexts).toEqual(['base:allocation']);
    expect((await runOk('nbdinfo', ['--size', m.d.uri(name('beta'))])).stdout.trim()).toBe(String(64 * MiB));
  });

  it('every --can / --is flag of a writable volume', async () => {
    // fast-zero is advertised by every writable export; a device that cannot zero
    // fast answers FAST_ZERO requests with ENOTSUP (docs/nbd.md; nbdsh.test.ts checks that).
    for (const what of ['connect', 'read', 'write', 'flush', 'fua', 'trim', 'zero', 'fast-zero', 'cache', 'df', 'multi-conn', 'structured-reply']) {
      expect(await flag('--can', what, name('alpha')), `--can ${what}`).toBe(true);
    }
    expect(await flag('--is', 'read-only', name('alpha'))).toBe(false);
    expect(await flag('--is', 'tls', name('alpha'))).toBe(false);
    const e = await info(name('alpha'));
    for (const k of ['can_cache', 'can_df', 'can_fast_zero', 'can_flush', 'can_fua', 'can_multi_conn', 'can_trim', 'can_zero']) {
      expect(e[k], k).toBe(true);
    }
    expect(e.is_read_only).toBe(false);
  });

  it('--map: a new volume is one extent; writes show as data; trim and zero turn them back into holes', async () => {
    const size = 32 * MiB;
    const { extents } = MODE_CAPS[mode];
    // Without extents (stored) BLOCK_STATUS answers one data extent for anything (modes.ts: MODE_CAPS).
    const whole = [{ offset: 0, length: size, ...DATA }];
    expect(await map(name('mapped'))).toEqual(extents ? [{ offset: 0, length: size, ...HOLE_ZERO }] : whole);
    await nbdshOk(`
      h.pwrite(b'\\xab' * (1024 * 1024), 4 * 1024 * 1024)
      h.pwrite(b'\\xcd' * (2 * 1024 * 1024), 16 * 1024 * 1024)
      h.flush()
    `, { uri: m.d.uri(name('mapped')) });
    expect(await map(name('mapped'))).toEqual(extents ? [
      { offset: 0, length: 4 * MiB, ...HOLE_ZERO },
      { offset: 4 * MiB, length: 1 * MiB, ...DATA },
      { offset: 5 * MiB, length: 11 * MiB, ...HOLE_ZERO },
      { offset: 16 * MiB, length: 2 * MiB, ...DATA },
      { offset: 18 * MiB, length: 14 * MiB, ...HOLE_ZERO },
    ] : whole);
    await nbdshOk(`
      h.trim(1024 * 1024, 4 * 1024 * 1024)
      h.zero(1024 * 1024, 16 * 1024 * 1024)
      h.flush()
    `, { uri: m.d.uri(name('mapped')) });
    // A cached volume reports a range zeroed in its log as data until the
    // upload turns those blocks into absent (zero) blocks of the live root
    // (docs/cached-volumes.md: holes are blocks neither the root nor the log hold).
    if (mode === 'cached') await m.drained(mode, 'mapped');
    expect(await map(name('mapped'))).toEqual(extents ? [
      { offset: 0, length: 17 * MiB, ...HOLE_ZERO },
      { offset: 17 * MiB, length: 1 * MiB, ...DATA },
      { offset: 18 * MiB, length: 14 * MiB, ...HOLE_ZERO },
    ] : whole);
    // --map --totals adds up to the export size.
    const totals = JSON.parse((await runOk('nbdinfo', ['--map', '--totals', '--json', m.d.uri(name('mapped'))])).stdout) as Array<{ size: number; type: number }>;
    const byType = Object.fromEntries(totals.map((t) => [t.type, t.size]));
    if (extents) {
      expect(byType[0]).toBe(1 * MiB);
      expect(byType[3]).toBe(31 * MiB);
    } else {
      expect(byType).toEqual({ 0: size });
    }
    // The content behind the map, from the volume's own durable copy.
    const want = Buffer.alloc(size);
    want.fill(0xcd, 17 * MiB, 18 * MiB);
    expect((await m.content(mode, 'mapped')).equals(want)).toBe(true);
  });
});

describe('nbdinfo: a read-only raw volume', () => {
  it('--is read-only, no write/trim/zero/fua, still flush/cache/multi-conn', async () => {
    expect(await flag('--is', 'read-only', 'ro')).toBe(true);
    expect(await flag('--can', 'write', 'ro')).toBe(false);
    for (const what of ['trim', 'zero', 'fast-zero', 'fua']) expect(await flag('--can', what, 'ro'), `--can ${what}`).toBe(false);
    for (const what of ['read', 'cache', 'multi-conn', 'df', 'structured-reply']) expect(await flag('--can', what, 'ro'), `--can ${what}`).toBe(true);
    const e = await info('ro');
    expect(e.is_read_only).toBe(true);
    // nbdinfo runs file(1) on the first sectors: 0x5a bytes are 'ZZZ…' text.
    expect(e.content).toMatch(/ASCII text/);
  });

  it('a read-only volume full of data maps as one data extent', async () => {
    expect(await map('ro')).toEqual([{ offset: 0, length: 8 * MiB, type: 0, description: 'data' }]);
  });
});
