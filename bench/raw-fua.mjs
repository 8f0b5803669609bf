#!/usr/bin/env node
// FUA strategy micro-benchmark for RawVolume (not a test): a second fd opened
// O_DSYNC ('dsync-fd') vs write + fdatasync of the shared fd ('fdatasync').
//
//   npm run build && node bench/raw-fua.mjs [dir]     (default dir: /var/tmp)
//
// Scenarios, each run for SECONDS (default 4) per mode, modes alternated over
// ROUNDS (default 3), medians printed:
//   fua-qd1     4 KiB FUA writes, one at a time
//   fua-qd32    4 KiB FUA writes, 32 in flight
//   mixed       32 in-flight 64 KiB plain writes + 4 KiB FUA writes at QD 4:
//               FUA latency when other writers dirty the page cache (the case
//               where fdatasync of the whole file has to flush their data too)
// The directory should be on the disk you care about (not tmpfs).
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';

const dist = process.env.BLOCKGATE_DIST ?? new URL('../dist/', import.meta.url).pathname;
const { RawVolume } = await import(join(dist, 'volumes', 'raw.js'));

const dir = await mkdtemp(join(process.argv[2] ?? '/var/tmp', 'blockgate-fua-'));
const SECONDS = Number(process.env.SECONDS ?? 4);
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SIZE = 256 * 1024 * 1024;

function randomOffset(align) {
  return Math.floor(Math.random() * (SIZE / align)) * align;
}

async function scenario(name, mode) {
  const v = await RawVolume.open({ path: join(dir, `${mode}.img`), size: SIZE, fuaMode: mode });
  const until = performance.now() + SECONDS * 1000;
  let fuaOps = 0;
  let plainBytes = 0;
  const lat = [];
  async function fuaWorker() {
    while (performance.now() < until) {
      const t = performance.now();
      await v.write(Buffer.alloc(4096, 1), randomOffset(4096), { fua: true });
      lat.push(performance.now() - t);
      fuaOps++;
    }
  }
  async function plainWorker() {
    while (performance.now() < until) {
      await v.write(Buffer.alloc(65536, 2), randomOffset(65536), { fua: false });
      plainBytes += 65536;
    }
  }
  const workers = [];
  if (name === 'fua-qd1') workers.push(fuaWorker());
  if (name === 'fua-qd32') for (let i = 0; i < 32; i++) workers.push(fuaWorker());
  if (name === 'mixed') {
    for (let i = 0; i < 4; i++) workers.push(fuaWorker());
    for (let i = 0; i < 32; i++) workers.push(plainWorker());
  }
  await Promise.all(workers);
  await v.close();
  await rm(join(dir, `${mode}.img`));
  lat.sort((a, b) => a - b);
  return {
    fuaIops: fuaOps / SECONDS,
    p50: lat[Math.floor(lat.length / 2)] ?? NaN,
    p99: lat[Math.floor(lat.length * 0.99)] ?? NaN,
    plainMiBs: plainBytes / SECONDS / 1048576,
  };
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1]; };
const modes = ['dsync-fd', 'fdatasync'];
const results = {};
try {
  for (const name of ['fua-qd1', 'fua-qd32', 'mixed']) {
    for (let r = 0; r < ROUNDS; r++) {
      for (const mode of r % 2 ? [...modes].reverse() : modes) {
        const res = await scenario(name, mode);
        ((results[name] ??= {})[mode] ??= []).push(res);
        console.error(`${name} ${mode} round ${r + 1}: ${res.fuaIops.toFixed(0)} FUA IOPS, p50 ${res.p50.toFixed(2)} ms, p99 ${res.p99.toFixed(2)} ms, plain ${res.plainMiBs.toFixed(0)} MiB/s`);
      }
    }
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
console.log('| scenario | mode | FUA IOPS | FUA p50 ms | FUA p99 ms | plain MiB/s |');
console.log('|---|---|---:|---:|---:|---:|');
for (const [name, byMode] of Object.entries(results)) {
  for (const [mode, rs] of Object.entries(byMode)) {
    const m = (k) => median(rs.map((x) => x[k]));
    console.log(`| ${name} | ${mode} | ${m('fuaIops').toFixed(0)} | ${m('p50').toFixed(2)} | ${m('p99').toFixed(2)} | ${name === 'mixed' ? m('plainMiBs').toFixed(0) : '-'} |`);
  }
}
