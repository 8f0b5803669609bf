#!/usr/bin/env node
// Hot-path metrics cost (not a test): ns per observation of an NBD request
// latency, for prom-client's Histogram (a labelled child looked up once) and
// for blockgate's FastHistogram (src/daemon/metrics-histogram.ts, what the
// daemon uses), plus the two clock reads a request pays for its duration.
// Best of ROUNDS runs. Compare with ~8-9 µs of CPU per 4 KiB NBD request
// (docs/performance.md); bench/nbd-fio.sh SERVERS="blockgate blockgate+metrics"
// measures the whole daemon with and without the endpoint.
//
//   npm run build && node bench/metrics.mjs        ROUNDS=5 N=2000000
import { join } from 'node:path';
import { Histogram, Registry } from 'prom-client';

const dist = process.env.BLOCKGATE_DIST ?? new URL('../dist/', import.meta.url).pathname;
const { FastHistogram } = await import(join(dist, 'daemon', 'metrics-histogram.js'));
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const N = Number(process.env.N ?? 2_000_000);
const BUCKETS = [0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const labels = { volume: 'v1', mode: 'raw', op: 'read' };

const registry = new Registry();
const prom = new Histogram({ name: 'prom_h', help: 'h', labelNames: ['volume', 'mode', 'op'], buckets: BUCKETS, registers: [registry] }).labels(labels);
const fast = new FastHistogram('fast_h', 'h', ['volume', 'mode', 'op'], BUCKETS, registry).child(labels);
// Latencies around a 4 KiB request's: 20..90 µs.
const ms = (i) => 0.02 + (i & 7) * 0.01;

const cases = {
  'prom-client Histogram child.observe(s)': () => { for (let i = 0; i < N; i++) prom.observe(ms(i) / 1000); },
  'FastHistogram child.observeMs(ms)': () => { for (let i = 0; i < N; i++) fast.observeMs(ms(i)); },
  'two performance.now() reads': () => { let s = 0; for (let i = 0; i < N; i++) { const t = performance.now(); s += performance.now() - t; } return s; },
  'empty loop': () => { let s = 0; for (let i = 0; i < N; i++) s += ms(i); return s; },
};
/** CPU time (user + system) in ns: on a shared host it is disturbed far less than wall-clock time. */
function cpuNs() {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}
console.log('| what | CPU ns per request |\n|---|---:|');
for (const [name, f] of Object.entries(cases)) {
  let best = Infinity;
  for (let r = 0; r < ROUNDS; r++) {
    const t = cpuNs();
    f();
    best = Math.min(best, (cpuNs() - t) / N);
  }
  console.log(`| ${name} | ${best.toFixed(1)} |`);
}
// The exposition agrees: both saw the same observations.
const text = await registry.metrics();
const count = (name) => Number(new RegExp(`^${name}_count\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1]);
if (count('prom_h') !== count('fast_h')) throw new Error(`counts differ: ${count('prom_h')} vs ${count('fast_h')}`);
