#!/usr/bin/env node
// RawVolume alone, no NBD (not a test): the ceiling the NBD layer can reach
// on this host. Same workloads as bench/nbd-fio.sh, issued from JS at the
// same queue depths against a prefilled file (page cache warm).
//
//   npm run build && node bench/raw-volume.mjs [dir]    (default /var/tmp)
//   SECONDS=4 ROUNDS=3 UV_THREADPOOL_SIZE=32 (the default here, as bin/blockgate)
//   NOWAIT_MAX=0 disables the RWF_NOWAIT cache-hit fast path (bytes; default: tuning.nowaitMax's, 64 KiB)
process.env.UV_THREADPOOL_SIZE ??= '32';
const { mkdtemp, rm, open } = await import('node:fs/promises');
const { join } = await import('node:path');

const dist = process.env.BLOCKGATE_DIST ?? new URL('../dist/', import.meta.url).pathname;
const { RawVolume } = await import(join(dist, 'volumes', 'raw.js'));

const SECONDS = Number(process.env.SECONDS ?? 4);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SIZE = 1024 * 1024 * 1024;
const dir = await mkdtemp(join(process.argv[2] ?? '/var/tmp', 'blockgate-rawbench-'));
const path = join(dir, 'disk.img');

// prefill with non-zero data
{
  const fh = await open(path, 'w');
  const chunk = Buffer.alloc(8 * 1024 * 1024, 0x5a);
  for (let off = 0; off < SIZE; off += chunk.length) await fh.write(chunk, 0, chunk.length, off);
  await fh.sync();
  await fh.close();
}

const tests = {
  'seqwrite-1m': { bs: 1 << 20, qd: 8, write: true, seq: true },
  'seqread-1m': { bs: 1 << 20, qd: 8, write: false, seq: true },
  'randread-4k-qd32': { bs: 4096, qd: 32, write: false, seq: false },
  'randwrite-4k-qd32': { bs: 4096, qd: 32, write: true, seq: false },
};

async function run(v, t) {
  const until = performance.now() + SECONDS * 1000;
  const cpu0 = process.cpuUsage();
  let ops = 0;
  let next = 0;
  async function worker() {
    while (performance.now() < until) {
      let off;
      if (t.seq) { off = next; next = (next + t.bs) % SIZE; } else off = Math.floor(Math.random() * (SIZE / t.bs)) * t.bs;
      if (t.write) await v.write(Buffer.allocUnsafe(t.bs).fill(7), off, { fua: false });
      else await v.read(Buffer.allocUnsafe(t.bs), off);
      ops++;
    }
  }
  await Promise.all(Array.from({ length: t.qd }, worker));
  const cpu = process.cpuUsage(cpu0);
  return { iops: ops / SECONDS, cpuPerIo: (cpu.user + cpu.system) / ops };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
const out = {};
try {
  const v = await RawVolume.open({ path, size: SIZE, ...(process.env.NOWAIT_MAX ? { nowaitMax: Number(process.env.NOWAIT_MAX) } : {}) });
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, t] of Object.entries(tests)) {
      const res = await run(v, t);
      (out[name] ??= []).push(res);
      console.error(`${name} round ${r + 1}: ${res.iops.toFixed(0)} IOPS, ${((res.iops * t.bs) / 1048576).toFixed(0)} MiB/s, ${res.cpuPerIo.toFixed(1)} CPU-us/IO`);
    }
  }
  await v.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
console.log('| test (RawVolume, no NBD) | MiB/s | IOPS | CPU µs/IO (process, all threads) |');
console.log('|---|---:|---:|---:|');
for (const [name, xs] of Object.entries(out)) {
  const iops = median(xs.map((x) => x.iops));
  const cpu = median(xs.map((x) => x.cpuPerIo));
  console.log(`| ${name} | ${((iops * tests[name].bs) / 1048576).toFixed(0)} | ${iops.toFixed(0)} | ${cpu.toFixed(1)} |`);
}
