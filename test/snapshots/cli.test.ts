// The snapshot CLI through the real built program (bin/blockgate when
// main.ts wires the commands, else a shim with main()'s error contract).
import { spawnSync } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { keys } from '../../src/snapshots/format.js';
import { ensureBuilt, repoRoot } from './build.js';
import { mutateBlocks, sha, writeImage } from './images.js';
import { s3Coordinates, storeFactories, tempDir } from './stores.js';

const BS = 64 * 1024;
let entry: string[] = [];

function run(args: string[], env: Record<string, string> = {}): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...entry, ...args], { env: { ...process.env, ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectCleanFailure(r: { code: number | null; stdout: string; stderr: string }, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

beforeAll(() => {
  ensureBuilt();
  entry = [join(repoRoot, 'bin', 'blockgate')];
});

describe.each(storeFactories())('blockgate snapshot CLI on $name store', (factory) => {
  let store: ObjectStore;
  let url: string;
  let env: Record<string, string>;
  let cleanup: () => Promise<void>;
  const dir = tempDir();
  const s = (...a: string[]): ReturnType<typeof run> => run([...a, '--store', url], env);

  beforeAll(async () => { ({ store, url, env, cleanup } = await factory.create()); });
  afterAll(async () => { await cleanup(); rmSync(dir, { recursive: true, force: true }); });

  it('upload, list, show, incremental upload, diff, download (full and incremental), usage, delete, gc', () => {
    const img = join(dir, 'disk.img');
    writeImage(img, BS * 50 + 321, BS, 'cli', (i) => i % 5 === 4);
    const up = s('snapshot', 'upload', img, '--block-size', '64KiB');
    expect(up.code, up.stderr).toBe(0);
    const id1 = up.stdout.trim();
    expect(id1).toMatch(/^snap-[0-9a-f]{22}$/);
    expect(up.stderr).toMatch(/uploaded snap-\w+ \(volume disk, 3.13 MiB\): 41 changed block/);

    const list = s('snapshot', 'list', '--json');
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((r: { id: string }) => r.id)).toEqual([id1]);
    expect(s('snapshot', 'list').stdout).toMatch(new RegExp(`${id1}\\s+disk\\s+3\\.13 MiB`));

    mutateBlocks(img, BS, [7, 8, 40], 'cli2');
    const up2 = s('snapshot', 'upload', img, '--parent', id1, '--json');
    expect(up2.code, up2.stderr).toBe(0);
    const j2 = JSON.parse(up2.stdout);
    expect(j2.parent).toBe(id1);
    expect(j2.changedBlocks).toBe(3);
    expect(j2.uploadedBytes).toBeLessThanOrEqual(3 * BS);
    const id2 = j2.id as string;

    const show = s('snapshot', 'show', id2);
    expect(show.stdout).toMatch(/parent:\s+snap-/);
    expect(show.stdout).toMatch(/new vs parent: 3 block/);
    const diff = s('snapshot', 'diff', id1, id2);
    expect(diff.stdout).toMatch(/^3 block\(s\) differ \(192 KiB/);
    expect(diff.stdout).toMatch(/blocks: 7-8,40/);
    expect(JSON.parse(s('snapshot', 'diff', id1, id2, '--json').stdout).blocks.map((b: { index: number }) => b.index)).toEqual([7, 8, 40]);

    const out = join(dir, 'restored.img');
    const dl = s('snapshot', 'download', id1, out);
    expect(dl.code, dl.stderr).toBe(0);
    expect(dl.stdout).toMatch(/restored .* 41 block\(s\) written \(2.50 MiB\), 10 skipped/);
    const inc = s('snapshot', 'download', id2, out, '--incremental', '--json');
    expect(JSON.parse(inc.stdout).writtenBlocks).toBe(3);
    expect(sha(out)).toBe(sha(img));

    const usage = JSON.parse(s('snapshot', 'usage', '--json').stdout);
    expect(usage.snapshots.find((u: { id: string }) => u.id === id1).exclusiveBlocks).toBe(3);
    expect(s('snapshot', 'usage').stdout).toMatch(/FREED IF DELETED/);

    expect(s('snapshot', 'delete', id1).stdout).toBe(`deleted ${id1}\n`);
    expectCleanFailure(s('snapshot', 'show', id1), /snapshot snap-\w+ not found \[ERR_SNAPSHOT_NOT_FOUND\]/);
    spawnSync('sleep', ['1.2']);
    const dry = JSON.parse(s('gc', '--grace', '0', '--dry-run', '--json').stdout);
    expect(dry.sweptBlocks).toBe(3);
    const gc = s('gc', '--grace', '0');
    expect(gc.stdout).toMatch(/^deleted 3 block\(s\)/);
    const again = join(dir, 'again.img');
    expect(s('snapshot', 'download', id2, again).code).toBe(0);
    expect(sha(again)).toBe(sha(img));
  });

  it('corrupted block: download fails with one line naming snapshot and block', async () => {
    const img = join(dir, 'c.img');
    writeImage(img, BS * 6, BS, 'cli-c');
    const id = s('snapshot', 'upload', img, '--volume', 'corrupt-cli', '--block-size', '64KiB').stdout.trim();
    const listed = JSON.parse(s('snapshot', 'show', id, '--json').stdout);
    expect(listed.blocks).toBe(6);
    // corrupt block 4 through the store
    const { SnapshotStore } = await import('../../src/snapshots/index.js');
    let hash = '';
    for await (const b of new SnapshotStore(store).listBlocks(id)) if (b.index === 4) hash = b.hash;
    const body = (await store.get(keys.block(hash))).body;
    body[40] ^= 1;
    await store.put(keys.block(hash), body);
    const r = s('snapshot', 'download', id, join(dir, 'c.out'));
    expectCleanFailure(r, new RegExp(`snapshot ${id} block 4.*\\[ERR_CHECKSUM_MISMATCH\\]`));
  });

  it('bad input gets one clean line and exit 1', () => {
    expectCleanFailure(s('snapshot', 'upload', join(dir, 'missing.img')), /missing\.img: no such file/);
    expectCleanFailure(s('snapshot', 'upload', join(dir, 'c.img'), '--volume', 'x', '--block-size', '3000'), /block size 3000/);
    expectCleanFailure(s('gc', '--grace', 'soon'), /--grace: 'soon' is not a duration/);
    expectCleanFailure(s('snapshot', 'diff', 'snap-000000000000aaaaaaaaaa', 'nope'), /not found/);
  });
});

describe('blockgate CLI store errors', () => {
  it('no store given', () => {
    expectCleanFailure(run(['snapshot', 'list'], { BLOCKGATE_STORE: '' }), /no object store given/);
  });

  it('--help for every command', () => {
    for (const c of [['snapshot'], ['snapshot', 'upload'], ['snapshot', 'download'], ['snapshot', 'list'], ['snapshot', 'show'], ['snapshot', 'diff'], ['snapshot', 'delete'], ['snapshot', 'usage'], ['gc']]) {
      const r = run([...c, '--help']);
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: blockgate/);
      if (c.length > 1 || c[0] === 'gc') expect(r.stdout).toMatch(/--store/);
    }
  });

  it('unreachable endpoint', () => {
    const r = run(['snapshot', 'list', '--store', 's3://bucket/p', '--endpoint', 'http://127.0.0.1:9', '--access-key-id', 'a', '--secret-access-key', 'b']);
    expectCleanFailure(r, /\[ERR_STORE_/);
  });

  it.runIf(s3Coordinates() !== undefined)('wrong credentials against RGW', async () => {
    const c = s3Coordinates()!;
    const r = run(['snapshot', 'list', '--store', 's3://whatever-bucket/p', '--endpoint', c.endpoint, '--access-key-id', c.accessKeyId, '--secret-access-key', 'wrong-secret']);
    expectCleanFailure(r, /\[ERR_STORE_ACCESS_DENIED\]/);
  });
});
