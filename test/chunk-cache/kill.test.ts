// A process using the chunk cache is SIGKILLed at arbitrary points (random
// reads over a working set 4x the cache, slot writes and index updates in
// flight). After every kill the cache must open without a reset, serve only
// correct bytes, find every indexed entry intact (no CRC drop: the slot write
// and index ordering make a process kill harmless), stay within its cap and
// still be warm. The child runs the compiled code (dist/, built by
// `npm run build`).
import { createCipheriv, createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ChunkCache } from '../../src/chunk-cache/index.js';
import { start } from '../harness/process.js';
import { tempDirs } from './helpers.js';

const repoRoot = resolve(import.meta.dirname, '..', '..');
const BS = 64 * 1024;
const BLOCKS = 64;
const SLOTS = 16;
const tmp = tempDirs();
afterEach(() => tmp.cleanup());

/** Deterministic block content (the child computes the same; see SCRIPT). */
function block(i: number): Buffer {
  const key = createHash('sha256').update(`blk${i}`).digest().subarray(0, 16);
  const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const size = i % 5 === 4 ? BS - 4 * i : BS;
  return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
}

const SCRIPT = `
  const { ChunkCache } = await import(process.env.DIST);
  const { createCipheriv, createHash } = await import('node:crypto');
  const BS = ${BS}, BLOCKS = ${BLOCKS};
  function block(i) {
    const key = createHash('sha256').update('blk' + i).digest().subarray(0, 16);
    const c = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
    const size = i % 5 === 4 ? BS - 4 * i : BS;
    return Buffer.concat([c.update(Buffer.alloc(size)), c.final()]);
  }
  let a = Number(process.env.SEED) >>> 0;
  const rnd = () => { a = (a + 0x6d2b79f5) >>> 0; let t = a; t = Math.imul(t ^ (t >>> 15), t | 1); t ^= t + Math.imul(t ^ (t >>> 7), t | 61); return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  const cache = await ChunkCache.open({ dir: process.env.DIR, blockSize: BS, capacityBytes: ${SLOTS} * BS, indexFlushMs: 5, maxPendingWrites: 8 });
  let ops = 0;
  const worker = async () => {
    while (ops < 1000000) {
      const i = rnd() < 0.5 ? Math.floor(rnd() * 8) : Math.floor(rnd() * BLOCKS);
      const want = block(i);
      const got = await cache.get('k' + i, async () => { await new Promise((r) => setImmediate(r)); return block(i); });
      if (!got.equals(want)) { process.stdout.write('WRONG k' + i + '\\n'); process.exit(3); }
      if (++ops % 25 === 0) process.stdout.write('ops ' + ops + '\\n');
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
`;

/** The child runs the built cache (dist/, `npm run build`, as scripts/test.sh does first). */
function assertBuilt(): void {
  for (const f of ['chunk-cache', 'format', 'index']) {
    const out = join(repoRoot, 'dist/chunk-cache', `${f}.js`);
    const src = join(repoRoot, 'src/chunk-cache', `${f}.ts`);
    if (!existsSync(out) || statSync(out).mtimeMs + 1000 < statSync(src).mtimeMs) throw new Error(`${out} is missing or older than ${src}: run 'npm run build'`);
  }
}

async function runAndKill(dir: string, seed: number, killAfterOps: number): Promise<void> {
  const child = start(process.execPath, ['--input-type=module', '-e', SCRIPT], {
    env: { DIST: join(repoRoot, 'dist/chunk-cache/index.js'), DIR: dir, SEED: String(seed) },
  });
  // Killed once it has done `killAfterOps` operations (it reports every 25).
  await new Promise<void>((res, rej) => {
    const t = setTimeout(() => done(new Error(`child made no progress:\n${child.output()}`)), 60_000);
    const done = (err?: Error): void => { clearTimeout(t); stop(); if (err) rej(err); else res(); };
    const stop = child.onData(() => {
      const out = child.stdout();
      if (out.includes('WRONG')) done(new Error(`child read wrong bytes: ${out}`));
      const m = /ops (\d+)\n(?![\s\S]*ops)/.exec(out);
      if (m && Number(m[1]) >= killAfterOps) done();
    });
    void child.exited.then((r) => done(new Error(`child exited (${r.code ?? r.signal}) before it was killed:\n${child.output()}`)));
  });
  await child.kill();
  expect((await child.exited).signal).toBe('SIGKILL');
}

describe('ChunkCache: SIGKILL at arbitrary points', () => {
  beforeAll(() => assertBuilt());

  it('reopens without a reset, every indexed entry intact, only correct bytes, within its cap, warm (5 kills)', async () => {
    const dir = tmp.make();
    const report: string[] = [];
    for (let round = 0; round < 5; round++) {
      await runAndKill(dir, 100 + round, 50 + round * 97);
      const cache = await ChunkCache.open({ dir, blockSize: BS, capacityBytes: SLOTS * BS });
      try {
        const opened = cache.stats();
        expect(opened.resets).toBe(0);
        expect(opened.entries).toBeGreaterThan(0);
        expect(opened.entries).toBeLessThanOrEqual(SLOTS);
        let fetched = 0;
        const fetch = (i: number) => async (): Promise<Buffer> => { fetched++; return block(i); };
        const cached = Array.from({ length: BLOCKS }, (_, i) => i).filter((i) => cache.has(`k${i}`));
        for (const i of cached) expect((await cache.get(`k${i}`, fetch(i))).equals(block(i)), `k${i} after kill ${round}`).toBe(true);
        // A kill leaves every indexed entry intact: all hits, no CRC drop.
        expect(cache.stats()).toMatchObject({ hits: opened.entries, checksumFailures: 0 });
        for (let i = 0; i < BLOCKS; i++) expect((await cache.get(`k${i}`, fetch(i))).equals(block(i)), `k${i} after kill ${round}`).toBe(true);
        report.push(`kill ${round}: ${opened.entries} warm entries, ${fetched} fetched`);
      } finally {
        await cache.close();
      }
    }
    process.stdout.write(`chunk-cache kill test: ${report.join('; ')}\n`);
  });
});
