// The snapshot CLI through the real built program (bin/blockgate when
// main.ts wires the commands, else a shim with main()'s error contract).
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { keys } from '../../src/snapshots/format.js';
import { runBlockgate, type RunResult } from '../harness/process.js';
import { ensureBuilt } from './build.js';
import { storeClockTick } from './store-clock.js';
import { mutateBlocks, sha, writeImage } from './images.js';
import { s3Coordinates, storeFactories, tempDir } from './stores.js';

const BS = 64 * 1024;

function run(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return runBlockgate(args, { env, timeoutMs: 120_000 });
}

function expectCleanFailure(r: RunResult, pattern: RegExp): void {
  expect(r.code, r.stderr).toBe(1);
  expect(r.stderr).toMatch(pattern);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\n\s+at /);
}

beforeAll(() => {
  ensureBuilt();
});

describe.each(storeFactories())('blockgate snapshot CLI on $name store', (factory) => {
  let store: ObjectStore;
  let url: string;
  let env: Record<string, string>;
  let cleanup: () => Promise<void>;
  const dir = tempDir();
  const s = (...a: string[]): Promise<RunResult> => run([...a, '--store', url], env);

  beforeAll(async () => { ({ store, url, env, cleanup } = await factory.create()); });
  afterAll(async () => { await cleanup(); rmSync(dir, { recursive: true, force: true }); });

  it('upload, list, show, incremental upload, diff, download (full and incremental), usage, delete, gc', async () => {
    const img = join(dir, 'disk.img');
    writeImage(img, BS * 50 + 321, BS, 'cli', (i) => i % 5 === 4);
    const up = (await s('snapshot', 'upload', img, '--block-size', '64KiB'));
    expect(up.code, up.stderr).toBe(0);
    const id1 = up.stdout.trim();
    expect(id1).toMatch(/^snap-[0-9a-f]{22}$/);
    expect(up.stderr).toMatch(/uploaded snap-\w+ \(volume disk, 3.13 MiB\): 41 changed block/);

    const list = (await s('snapshot', 'list', '--json'));
    expect(list.code, list.stderr).toBe(0);
    expect(JSON.parse(list.stdout).map((r: { id: string }) => r.id)).toEqual([id1]);
    expect((await s('snapshot', 'list')).stdout).toMatch(new RegExp(`${id1}\\s+disk\\s+3\\.13 MiB`));

    mutateBlocks(img, BS, [7, 8, 40], 'cli2');
    const up2 = (await s('snapshot', 'upload', img, '--parent', id1, '--json'));
    expect(up2.code, up2.stderr).toBe(0);
    const j2 = JSON.parse(up2.stdout);
    expect(j2.parent).toBe(id1);
    expect(j2.changedBlocks).toBe(3);
    expect(j2.uploadedBytes).toBeLessThanOrEqual(3 * BS);
    const id2 = j2.id as string;

    const show = (await s('snapshot', 'show', id2));
    expect(show.stdout).toMatch(/parent:\s+snap-/);
    expect(show.stdout).toMatch(/new vs parent: 3 block/);
    const diff = (await s('snapshot', 'diff', id1, id2));
    expect(diff.stdout).toMatch(/^3 block\(s\) differ \(192 KiB/);
    expect(diff.stdout).toMatch(/blocks: 7-8,40/);
    expect(JSON.parse((await s('snapshot', 'diff', id1, id2, '--json')).stdout).blocks.map((b: { index: number }) => b.index)).toEqual([7, 8, 40]);

    const out = join(dir, 'restored.img');
    const dl = (await s('snapshot', 'download', id1, out));
    expect(dl.code, dl.stderr).toBe(0);
    expect(dl.stdout).toMatch(/restored .* 41 block\(s\) written \(2.50 MiB\), 10 skipped/);
    const inc = (await s('snapshot', 'download', id2, out, '--incremental', '--json'));
    expect(JSON.parse(inc.stdout).writtenBlocks).toBe(3);
    expect(sha(out)).toBe(sha(img));

    const usage = JSON.parse((await s('snapshot', 'usage', '--json')).stdout);
    expect(usage.snapshots.find((u: { id: string }) => u.id === id1).exclusiveBlocks).toBe(3);
    expect((await s('snapshot', 'usage')).stdout).toMatch(/FREED IF DELETED/);

    expect((await s('snapshot', 'delete', id1)).stdout).toBe(`deleted ${id1}\n`);
    expectCleanFailure((await s('snapshot', 'show', id1)), /snapshot snap-\w+ not found \[ERR_SNAPSHOT_NOT_FOUND\]/);
    await storeClockTick(store); // the deleted snapshot's trash is now older than a grace of 0
    const dry = JSON.parse((await s('gc', '--grace', '0', '--dry-run', '--json')).stdout);
    expect(dry.sweptBlocks).toBe(3);
    const gc = (await s('gc', '--grace', '0'));
    expect(gc.stdout).toMatch(/^deleted 3 block\(s\)/);
    const again = join(dir, 'again.img');
    expect((await s('snapshot', 'download', id2, again)).code).toBe(0);
    expect(sha(again)).toBe(sha(img));
  });

  it('corrupted block: download fails with one line naming snapshot and block', async () => {
    const img = join(dir, 'c.img');
    writeImage(img, BS * 6, BS, 'cli-c');
    const id = (await s('snapshot', 'upload', img, '--volume', 'corrupt-cli', '--block-size', '64KiB')).stdout.trim();
    const listed = JSON.parse((await s('snapshot', 'show', id, '--json')).stdout);
    expect(listed.blocks).toBe(6);
    // corrupt block 4 through the store
    const { SnapshotStore } = await import('../../src/snapshots/index.js');
    let hash = '';
    for await (const b of new SnapshotStore(store).listBlocks(id)) if (b.index === 4) hash = b.hash;
    const body = (await store.get(keys.block(hash))).body;
    body[40] ^= 1;
    await store.put(keys.block(hash), body);
    const r = (await s('snapshot', 'download', id, join(dir, 'c.out')));
    expectCleanFailure(r, new RegExp(`snapshot ${id} block 4.*\\[ERR_CHECKSUM_MISMATCH\\]`));
  });

  it('bad input gets one clean line and exit 1', async () => {
    expectCleanFailure((await s('snapshot', 'upload', join(dir, 'missing.img'))), /missing\.img: no such file/);
    expectCleanFailure((await s('snapshot', 'upload', join(dir, 'c.img'), '--volume', 'x', '--block-size', '3000')), /block size 3000/);
    expectCleanFailure((await s('gc', '--grace', 'soon')), /--grace: 'soon' is not a duration/);
    expectCleanFailure((await s('snapshot', 'diff', 'snap-000000000000aaaaaaaaaa', 'nope')), /not found/);
  });
});

describe('blockgate CLI store errors', () => {
  it('no store given', async () => {
    expectCleanFailure((await run(['snapshot', 'list'], { BLOCKGATE_STORE: '' })), /no object store given/);
  });

  it('--help for every command', async () => {
    for (const c of [['snapshot'], ['snapshot', 'upload'], ['snapshot', 'download'], ['snapshot', 'list'], ['snapshot', 'show'], ['snapshot', 'diff'], ['snapshot', 'delete'], ['snapshot', 'usage'], ['gc']]) {
      const r = (await run([...c, '--help']));
      expect(r.code, c.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: blockgate/);
      if (c.length > 1 || c[0] === 'gc') expect(r.stdout).toMatch(/--store/);
    }
  });

  it('unreachable endpoint', async () => {
    const r = (await run(['snapshot', 'list', '--store', 's3://bucket/p', '--endpoint', 'http://127.0.0.1:9', '--access-key-id', 'a', '--secret-access-key', 'b']));
    expectCleanFailure(r, /\[ERR_STORE_/);
  });

  it.runIf(s3Coordinates() !== undefined)('wrong credentials against RGW', async () => {
    const c = s3Coordinates()!;
    const r = (await run(['snapshot', 'list', '--store', 's3://whatever-bucket/p', '--endpoint', c.endpoint, '--access-key-id', c.accessKeyId, '--secret-access-key', 'wrong-secret']));
    expectCleanFailure(r, /\[ERR_STORE_ACCESS_DENIED\]/);
  });
});
