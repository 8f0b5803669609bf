// nbdinfo (libnbd) against a real blockgate daemon: export listing with
// descriptions, sizes, block-size constraints, every --can/--is flag for a
// writable and a read-only raw volume, and --map after writes and trims.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { nbdshOk, requireTools, run, runOk } from '../harness/nbd-tools.js';

const MiB = 1024 * 1024;

interface MapEntry { offset: number; length: number; type: number; description: string }

let d: DaemonHandle;
let dir: string;

beforeAll(async () => {
  requireTools('nbdinfo', 'nbdsh');
  dir = tempDir('blockgate-nbdinfo-');
  mkdirSync(join(dir, 'disks'));
  writeFileSync(join(dir, 'disks', 'ro.img'), Buffer.alloc(8 * MiB, 0x5a));
  d = await startDaemon({
    volumes: [
      { name: 'alpha', mode: 'raw', size: '256MiB', disk: join(dir, 'disks', 'alpha.img'), description: 'First volume (alpha)' },
      { name: 'beta', mode: 'raw', size: '64MiB', disk: join(dir, 'disks', 'beta.img'), description: 'Second volume: beta' },
      { name: 'ro', mode: 'raw', disk: join(dir, 'disks', 'ro.img'), readOnly: true },
      { name: 'mapped', mode: 'raw', size: '32MiB', disk: join(dir, 'disks', 'mapped.img') },
    ],
  }, { dir });
});

afterAll(async () => {
  if (d) expect(await d.stop()).toBe(0);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function info(name: string): Promise<Record<string, unknown>> {
  const r = await runOk('nbdinfo', ['--json', d.uri(name)]);
  const doc = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>>; structured: boolean; TLS: boolean; protocol: string };
  expect(doc.protocol).toBe('newstyle-fixed');
  expect(doc.structured).toBe(true);
  expect(doc.TLS).toBe(false);
  expect(doc.exports).toHaveLength(1);
  return doc.exports[0]!;
}

async function flag(kind: '--can' | '--is', what: string, name: string): Promise<boolean> {
  const r = await run('nbdinfo', [kind, what, d.uri(name)]);
  if (r.code !== 0 && r.code !== 2) throw new Error(`nbdinfo ${kind} ${what} failed (${r.code}): ${r.stderr}`);
  return r.code === 0;
}

async function map(name: string): Promise<MapEntry[]> {
  const r = await runOk('nbdinfo', ['--map', '--json', d.uri(name)]);
  return JSON.parse(r.stdout) as MapEntry[];
}

describe('nbdinfo', () => {
  it('--list shows every export with its description, in config order', async () => {
    const r = await runOk('nbdinfo', ['--list', '--json', `nbd://${d.host}:${d.port}`]);
    const doc = JSON.parse(r.stdout) as { exports: Array<Record<string, unknown>> };
    expect(doc.exports.map((e) => e['export-name'])).toEqual(['alpha', 'beta', 'ro', 'mapped']);
    const byName = Object.fromEntries(doc.exports.map((e) => [e['export-name'], e]));
    expect(byName.alpha!.description).toBe('First volume (alpha)');
    expect(byName.beta!.description).toBe('Second volume: beta');
    expect(byName.ro!.description).toBeUndefined();
    expect(byName.alpha!['export-size']).toBe(256 * MiB);
    expect(byName.beta!['export-size']).toBe(64 * MiB);
    expect(byName.ro!['export-size']).toBe(8 * MiB);
    // Human-readable form too.
    const text = await runOk('nbdinfo', ['--list', `nbd://${d.host}:${d.port}`]);
    expect(text.stdout).toMatch(/export="alpha":\s*\n\s*description: First volume \(alpha\)/);
    expect(text.stdout).toMatch(/export="beta":/);
  });

  it('reports size, block sizes (1 / 4096 / 32 MiB) and the base:allocation context', async () => {
    const e = await info('alpha');
    expect(e['export-name']).toBe('alpha');
    expect(e['export-size']).toBe(256 * MiB);
    expect(e.block_size_minimum).toBe(1);
    expect(e.block_size_preferred).toBe(4096);
    expect(e.block_size_maximum).toBe(32 * MiB);
    expect(e.contexts).toEqual(['base:allocation']);
    expect((await runOk('nbdinfo', ['--size', d.uri('beta')])).stdout.trim()).toBe(String(64 * MiB));
  });

  it('the empty export name selects the first volume', async () => {
    const r = await runOk('nbdinfo', ['--size', `nbd://${d.host}:${d.port}/`]);
    expect(r.stdout.trim()).toBe(String(256 * MiB));
  });

  it('an unknown export name is refused', async () => {
    const r = await run('nbdinfo', [d.uri('no-such-export')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no-such-export|unknown|not found|export/i);
  });

  it('every --can / --is flag of a writable raw volume', async () => {
    for (const what of ['connect', 'read', 'write', 'flush', 'fua', 'trim', 'zero', 'fast-zero', 'cache', 'df', 'multi-conn', 'structured-reply']) {
      expect(await flag('--can', what, 'alpha'), `--can ${what}`).toBe(true);
    }
    expect(await flag('--is', 'read-only', 'alpha')).toBe(false);
    expect(await flag('--is', 'tls', 'alpha')).toBe(false);
    const e = await info('alpha');
    for (const k of ['can_cache', 'can_df', 'can_fast_zero', 'can_flush', 'can_fua', 'can_multi_conn', 'can_trim', 'can_zero']) {
      expect(e[k], k).toBe(true);
    }
    expect(e.is_read_only).toBe(false);
  });

  it('a readOnly volume: --is read-only, no write/trim/zero/fua, still flush/cache/multi-conn', async () => {
    expect(await flag('--is', 'read-only', 'ro')).toBe(true);
    expect(await flag('--can', 'write', 'ro')).toBe(false);
    for (const what of ['trim', 'zero', 'fast-zero', 'fua']) expect(await flag('--can', what, 'ro'), `--can ${what}`).toBe(false);
    for (const what of ['read', 'cache', 'multi-conn', 'df', 'structured-reply']) expect(await flag('--can', what, 'ro'), `--can ${what}`).toBe(true);
    const e = await info('ro');
    expect(e.is_read_only).toBe(true);
    // nbdinfo runs file(1) on the first sectors: 0x5a bytes are 'ZZZ…' text.
    expect(e.content).toMatch(/ASCII text/);
  });

  it('--map: a new volume is one hole; writes show as data; trim and zero turn them back into holes', async () => {
    expect(await map('mapped')).toEqual([{ offset: 0, length: 32 * MiB, type: 3, description: 'hole,zero' }]);
    await nbdshOk(`
      h.pwrite(b'\\xab' * (1024 * 1024), 4 * 1024 * 1024)
      h.pwrite(b'\\xcd' * (2 * 1024 * 1024), 16 * 1024 * 1024)
      h.flush()
    `, { uri: d.uri('mapped') });
    expect(await map('mapped')).toEqual([
      { offset: 0, length: 4 * MiB, type: 3, description: 'hole,zero' },
      { offset: 4 * MiB, length: 1 * MiB, type: 0, description: 'data' },
      { offset: 5 * MiB, length: 11 * MiB, type: 3, description: 'hole,zero' },
      { offset: 16 * MiB, length: 2 * MiB, type: 0, description: 'data' },
      { offset: 18 * MiB, length: 14 * MiB, type: 3, description: 'hole,zero' },
    ]);
    await nbdshOk(`
      h.trim(1024 * 1024, 4 * 1024 * 1024)
      h.zero(1024 * 1024, 16 * 1024 * 1024)
      h.flush()
    `, { uri: d.uri('mapped') });
    expect(await map('mapped')).toEqual([
      { offset: 0, length: 17 * MiB, type: 3, description: 'hole,zero' },
      { offset: 17 * MiB, length: 1 * MiB, type: 0, description: 'data' },
      { offset: 18 * MiB, length: 14 * MiB, type: 3, description: 'hole,zero' },
    ]);
    // --map --totals adds up to the export size.
    const totals = JSON.parse((await runOk('nbdinfo', ['--map', '--totals', '--json', d.uri('mapped')])).stdout) as Array<{ size: number; type: number }>;
    const byType = Object.fromEntries(totals.map((t) => [t.type, t.size]));
    expect(byType[0]).toBe(1 * MiB);
    expect(byType[3]).toBe(31 * MiB);
  });

  it('a read-only volume full of data maps as one data extent', async () => {
    expect(await map('ro')).toEqual([{ offset: 0, length: 8 * MiB, type: 0, description: 'data' }]);
  });
});
