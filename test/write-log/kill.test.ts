// (a) Process crash on the real file system: a child appends (bursts of
// concurrent appends, periodic group-committed syncs) and prints each synced
// seq; it is SIGKILLed at a seeded random moment; the parent reopens the log
// and checks that every record <= the last printed synced seq is there with
// exact content, that seqs are contiguous (nothing after a gap), then
// releases and goes again. SIM_SEED replays one run's schedule.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'rolldown';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WriteLog } from '../../src/write-log/write-log.js';
import { recordFor, KILL_VOLUME } from './kill-records.js';
import { seeds, tempDir, withSeed } from './helpers.js';
import { rng32, randInt } from './sim-disk.js';

const here = fileURLToPath(new URL('.', import.meta.url));
let work: { dir: string; cleanup: () => void };
let childJs: string;

beforeAll(async () => {
  work = tempDir('wlog-kill');
  childJs = join(work.dir, 'kill-child.mjs');
  const crcPath = createRequire(import.meta.url).resolve('@node-rs/crc32');
  await build({
    input: join(here, 'kill-child.ts'),
    platform: 'node',
    external: [/^node:/],
    plugins: [{ name: 'native-external', resolveId: (id: string) => (id === '@node-rs/crc32' ? { id: crcPath, external: true } : null) }],
    output: { file: childJs, format: 'esm' },
    logLevel: 'silent',
  });
});
afterAll(() => work?.cleanup());

interface ChildRun { synced: number; ready: number; exit: string }

function runChild(dir: string, seed: number, killAfterMs: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [childJs, dir, String(seed), '200000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | undefined;
    const hardStop = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.stdout.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (!timer && out.includes('ready ')) timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      clearTimeout(hardStop);
      if (timer) clearTimeout(timer);
      if (signal !== 'SIGKILL' && code !== 0) return reject(new Error(`child exited ${code}: ${err}`));
      let synced = 0;
      let ready = -1;
      for (const line of out.split('\n')) {
        const m = /^(synced|ready) (\d+)$/.exec(line);
        if (m?.[1] === 'synced') synced = Math.max(synced, Number(m[2]));
        if (m?.[1] === 'ready') ready = Number(m[2]);
      }
      resolve({ synced, ready, exit: signal ?? String(code) });
    });
  });
}

describe('SIGKILL during appends (real file system)', () => {
  it('every record up to the last printed synced seq survives, exactly, with no gaps', async () => {
    for (const seed of seeds(41, 1)) {
      await withSeed(seed, async () => {
        const rng = rng32(seed);
        const { dir, cleanup } = tempDir('wlog-kill-log');
        try {
          let totalChecked = 0;
          let maxSynced = 0;
          const cycles = 22;
          for (let cycle = 0; cycle < cycles; cycle++) {
            const run = await runChild(dir, randInt(rng, 1, 2 ** 31), randInt(rng, 20, 300));
            expect(run.exit).toBe('SIGKILL');
            maxSynced = Math.max(maxSynced, run.synced);
            const wl = await WriteLog.open(dir, { capacityBytes: 1 << 30, segmentBytes: 1 << 20, volumeId: KILL_VOLUME });
            try {
              expect(wl.newestSeq).toBeGreaterThanOrEqual(maxSynced);
              expect(wl.newestSeq).toBeGreaterThanOrEqual(run.ready);
              let expectSeq = wl.releasedSeq + 1;
              for await (const r of wl.pendingRecords(wl.releasedSeq, { withData: true })) {
                expect(r.seq).toBe(expectSeq++);
                const want = recordFor(r.seq);
                expect(r.type).toBe(want.type);
                if (want.type === 'marker') {
                  expect(r.payload).toEqual(want.payload);
                } else {
                  expect([r.offset, r.length]).toEqual([want.offset, want.length]);
                  if (want.type === 'write') expect(r.data!.equals(want.data!)).toBe(true);
                }
                totalChecked++;
              }
              expect(expectSeq - 1).toBe(wl.newestSeq);
              // As an uploader would after a snapshot: keep the log small.
              if (cycle % 2 === 1) await wl.release(wl.newestSeq);
            } finally {
              await wl.close();
            }
          }
          expect(maxSynced).toBeGreaterThan(0);
          expect(totalChecked).toBeGreaterThan(100);
        } finally {
          cleanup();
        }
      });
    }
  });
});
