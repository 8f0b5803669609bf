// (a) Process crash on the real file system: a child appends (bursts of
// concurrent appends, periodic group-committed syncs) and prints each synced
// seq; it is SIGKILLed at a seeded random moment; the parent reopens the log
// and checks that every record <= the last printed synced seq is there with
// exact content, that seqs are contiguous (nothing after a gap), then
// releases and goes again. SIM_SEED replays one run's schedule.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { WriteLog } from '../../src/write-log/write-log.js';
import { repoRoot, start } from '../harness/process.js';
import { recordFor, KILL_VOLUME } from './kill-records.mjs';
import { seeds, tempDir, withSeed } from './helpers.js';
import { rng32, randInt } from './sim-disk.js';

// The child runs with node itself over the built write log (dist/): no bundler, the real native addon.
const childJs = join(fileURLToPath(new URL('.', import.meta.url)), 'kill-child.mjs');

beforeAll(() => {
  const built = join(repoRoot, 'dist', 'write-log', 'write-log.js');
  if (!existsSync(built)) throw new Error(`${built} is missing: run 'npm run build'`);
});

interface ChildRun { synced: number; ready: number; native: boolean; exit: string }

/** Runs the child and SIGKILLs it `killAfterMs` after it said ready (a seeded crash point, not a wait). */
async function runChild(dir: string, seed: number, killAfterMs: number): Promise<ChildRun> {
  const child = start(process.execPath, [childJs, dir, String(seed), '200000']);
  let timer: NodeJS.Timeout | undefined;
  const hardStop = setTimeout(() => child.process.kill('SIGKILL'), 20_000);
  const stopWatching = child.onData(() => {
    if (!timer && child.stdout().includes('ready ')) timer = setTimeout(() => child.process.kill('SIGKILL'), killAfterMs);
  });
  const r = await child.exited;
  stopWatching();
  clearTimeout(hardStop);
  if (timer) clearTimeout(timer);
  if (r.signal !== 'SIGKILL' && r.code !== 0) throw new Error(`child exited ${r.code}: ${r.stderr}`);
  let synced = 0;
  let ready = -1;
  let native = false;
  for (const line of r.stdout.split('\n')) {
    const m = /^(synced|ready) (\d+)(?: (native|no-native))?$/.exec(line);
    if (m?.[1] === 'synced') synced = Math.max(synced, Number(m[2]));
    if (m?.[1] === 'ready') { ready = Number(m[2]); native = m[3] === 'native'; }
  }
  return { synced, ready, native, exit: r.signal ?? String(r.code) };
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
            expect(run.native, 'the child loaded the native addon').toBe(true);
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
          process.stdout.write(`write-log kill test (seed ${seed}): ${cycles} SIGKILLs, ${totalChecked} replayed records checked, newest synced seq ${maxSynced}\n`);
        } finally {
          cleanup();
        }
      });
    }
  });
});
