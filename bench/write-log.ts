// Write-log micro-benchmark: append+sync throughput of WriteLog vs plain
// fs.write + fdatasync appending to a file on the same disk, for 4 KiB and
// 1 MiB writes, at queue depth 1 (every write waits for its own sync, like a
// stream of FUA writes) and 16 (16 writers, each write then sync; the write
// log group-commits their syncs, the plain file does one fdatasync each).
// Rounds alternate log/plain; the median of the rounds is printed.
//
// Run (bundles the TypeScript with the rolldown that vitest brings):
//   npx rolldown bench/write-log.ts -p node -f esm --external '@node-rs/crc32' \
//     -o node_modules/.cache/bench/write-log.mjs && node node_modules/.cache/bench/write-log.mjs [dir] [seconds]
// dir defaults to a temp dir under $TMPDIR (use one on the disk you care about).
import * as fs from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WriteLog } from '../src/write-log/write-log.js';

const baseDir = process.argv[2] ?? tmpdir();
const seconds = Number(process.argv[3] ?? 1.5);
const ROUNDS = 3;
const MAX_BYTES_PER_RUN = 512 << 20; // bound disk use per run

function p<T>(fn: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void): Promise<T> {
  return new Promise<T>((res, rej) => fn((e, v) => (e ? rej(e) : res(v))));
}

interface Result { ops: number; bytes: number; ms: number }

async function runLog(dir: string, size: number, depth: number): Promise<Result> {
  const wl = await WriteLog.open(join(dir, 'log'), { capacityBytes: 4 * 2 ** 30, volumeId: 'bench', segmentBytes: 64 << 20 });
  const data = Buffer.alloc(size, 0x5a);
  const deadline = performance.now() + seconds * 1000;
  let ops = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: depth }, async (_, w) => {
    let off = w * size;
    while (performance.now() < deadline && ops * size < MAX_BYTES_PER_RUN) {
      await wl.append(off, data);
      await wl.sync();
      off += depth * size;
      ops++;
    }
  }));
  const ms = performance.now() - start;
  await wl.close();
  return { ops, bytes: ops * size, ms };
}

async function runPlain(dir: string, size: number, depth: number): Promise<Result> {
  const fd = fs.openSync(join(dir, 'plain'), 'w');
  const data = Buffer.alloc(size, 0x5a);
  const deadline = performance.now() + seconds * 1000;
  let ops = 0;
  let pos = 0;
  const start = performance.now();
  await Promise.all(Array.from({ length: depth }, async () => {
    while (performance.now() < deadline && ops * size < MAX_BYTES_PER_RUN) {
      const at = pos;
      pos += size;
      await p<number>((cb) => fs.write(fd, data, 0, size, at, cb));
      await p<void>((cb) => fs.fdatasync(fd, (e) => cb(e, undefined)));
      ops++;
    }
  }));
  const ms = performance.now() - start;
  fs.closeSync(fd);
  return { ops, bytes: ops * size, ms };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const rows: string[] = [];
for (const size of [4096, 1 << 20]) {
  for (const depth of [1, 16]) {
    const log: number[] = [];
    const plain: number[] = [];
    for (let r = 0; r < ROUNDS; r++) {
      for (const which of r % 2 === 0 ? ['log', 'plain'] : ['plain', 'log']) {
        const dir = mkdtempSync(join(baseDir, 'bg-wlbench-'));
        try {
          const res = which === 'log' ? await runLog(dir, size, depth) : await runPlain(dir, size, depth);
          (which === 'log' ? log : plain).push(res.bytes / (res.ms / 1000));
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
    const l = median(log);
    const pl = median(plain);
    const mib = (x: number): string => (x / 2 ** 20).toFixed(1).padStart(8);
    const iops = (x: number): string => Math.round(x / size).toString().padStart(7);
    rows.push(`${(size === 4096 ? '4 KiB' : '1 MiB').padEnd(6)} QD${String(depth).padEnd(3)} write-log ${mib(l)} MiB/s ${iops(l)} op/s | plain write+fdatasync ${mib(pl)} MiB/s ${iops(pl)} op/s | ratio ${(l / pl).toFixed(2)}`);
    console.log(rows[rows.length - 1]);
  }
}
console.log(`\n(${ROUNDS} alternating rounds of ${seconds}s each, median; dir ${baseDir})`);
