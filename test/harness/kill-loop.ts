// The SIGKILL loop shared by the stored and cached crash tests: per cycle,
// start the daemon, read the whole volume back and check it against the
// model (unit-model.ts), run the concurrent writer (crash-writer.ts) until a
// seeded number of operations were acknowledged, SIGKILL the daemon, feed
// the writer's events to the model. After the last kill: start once more and
// check. Every checker or writer failure is a test failure; the counts come
// back so the caller can assert the loop tested something.
import { expect } from 'vitest';
import { readUnits, startWriter, UNIT, type WriterParams } from './crash-writer.js';
import type { DaemonHandle } from './daemon.js';
import { mulberry32 } from './prng.js';
import { UnitModel, type CheckStats } from './unit-model.js';

export interface KillLoopOptions {
  start: () => Promise<DaemonHandle>;
  exportName: string;
  size: number;
  cycles: number;
  seed: number;
  /** Acknowledged operations before the kill: uniform in [min, max]. */
  killAfter: readonly [number, number];
  writer: Omit<WriterParams, 'uri' | 'seed' | 'base' | 'units'>;
  /** Called after each check (e.g. to log progress). */
  log?: (line: string) => void;
}

export interface KillLoopResult {
  /** The daemon started after the last kill (its volume checked), still running. */
  daemon: DaemonHandle;
  /** sha256 of the volume as the last check read it. */
  sha256: string;
  totals: CheckStats & { checks: number; began: number; acked: number; flushesAcked: number; fuaAcked: number; zeroesAcked: number; trimsAcked: number };
}

export async function killLoop(o: KillLoopOptions): Promise<KillLoopResult> {
  const units = o.size / UNIT;
  const model = new UnitModel(units);
  const rnd = mulberry32(o.seed);
  const totals: KillLoopResult['totals'] = { checks: 0, units: 0, forced: 0, newerThanDurable: 0, changed: 0, began: 0, acked: 0, flushesAcked: 0, fuaAcked: 0, zeroesAcked: 0, trimsAcked: 0 };
  let base = 1;
  const check = async (d: DaemonHandle, label: string): Promise<string> => {
    const got = await readUnits(d.uri(o.exportName), o.size);
    const { failures, stats } = model.check(got.contents);
    expect(failures.slice(0, 20), `${label}: ${failures.length} unit(s) broke the crash contract (seed ${o.seed})`).toEqual([]);
    expect(stats.units).toBe(units);
    totals.checks++;
    totals.units += stats.units;
    totals.forced += stats.forced;
    totals.newerThanDurable += stats.newerThanDurable;
    totals.changed += stats.changed;
    o.log?.(`${label}: ${stats.units} units checked, ${stats.changed} changed, ${stats.forced} forced by a durable write, ${stats.newerThanDurable} hold a newer non-durable version`);
    return got.sha256;
  };
  for (let cycle = 0; cycle < o.cycles; cycle++) {
    const d = await o.start();
    await check(d, `cycle ${cycle} start`);
    const w = startWriter({ ...o.writer, uri: d.uri(o.exportName), seed: o.seed + cycle, base, units });
    const n = o.killAfter[0] + Math.floor(rnd() * (o.killAfter[1] - o.killAfter[0] + 1));
    try {
      await w.acked(n).catch((err: Error) => {
        throw new Error(`cycle ${cycle} (seed ${o.seed}): ${err.message}\ndaemon log (last 40 lines):\n${d.output().split('\n').slice(-40).join('\n')}`);
      });
    } finally {
      w.markKill();
      await d.kill();
    }
    const res = await w.finish(model);
    expect(res.failures, `cycle ${cycle} (seed ${o.seed})`).toEqual([]);
    base = res.nextBase;
    totals.began += res.began;
    totals.acked += res.acked;
    totals.flushesAcked += res.flushesAcked;
    totals.fuaAcked += res.fuaAcked;
    totals.zeroesAcked += res.byKind.Z;
    totals.trimsAcked += res.byKind.T;
    o.log?.(`cycle ${cycle}: killed after ${res.acked} acknowledged operations (${res.flushesAcked} flushes, ${res.fuaAcked} FUA, ${res.byKind.Z} zeroes, ${res.byKind.T} trims) of ${res.began} begun`);
  }
  const daemon = await o.start();
  const sha256 = await check(daemon, 'after the last kill');
  return { daemon, sha256, totals };
}
