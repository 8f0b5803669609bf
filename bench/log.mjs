#!/usr/bin/env node
// Log cost (not a test): CPU time per JSON log line and lines/s, for blockgate's
// Logger (src/log.ts, on pino) and for the hand-written logger it replaced
// (kept below verbatim as the baseline), each writing to a no-op sink (the
// formatting alone) and to /dev/null with a synchronous write (formatting +
// one syscall per line, as on stderr). Also the cost of a call below the
// level (a debug line with the level at info). Best of ROUNDS runs (a noisy,
// shared host only ever makes a run slower).
//
//   npm run build && node bench/log.mjs        ROUNDS=5 LINES=100000
import { openSync, writeSync } from 'node:fs';
import { join } from 'node:path';

const dist = process.env.BLOCKGATE_DIST ?? new URL('../dist/', import.meta.url).pathname;
const { Logger } = await import(join(dist, 'log.js'));
const ROUNDS = Number(process.env.ROUNDS ?? 5);
const LINES = Number(process.env.LINES ?? 100_000);

// The hand-written logger blockgate used before pino (src/log.ts until issue #11), JSON path.
const LEVEL_RANK = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };
class HandWrittenLogger {
  constructor(options = {}, bindings = {}) { this.threshold = LEVEL_RANK[options.level ?? 'info']; this.write = options.write; this.bindings = bindings; }
  child(b) { const c = Object.create(HandWrittenLogger.prototype); Object.assign(c, this, { bindings: { ...this.bindings, ...b } }); return c; }
  debug(msg, fields) { this.log('debug', msg, fields); }
  info(msg, fields) { this.log('info', msg, fields); }
  log(level, msg, fields) {
    if (LEVEL_RANK[level] < this.threshold) return;
    const record = { time: new Date().toISOString(), level, msg, ...this.bindings, ...fields };
    for (const [k, v] of Object.entries(record)) if (v instanceof Error) record[k] = { message: v.message, code: v.code };
    this.write(JSON.stringify(record) + '\n');
  }
}

const devnull = openSync('/dev/null', 'w');
let bytes = 0;
const sinks = {
  // Formatting only. Unfair to pino alone: its line is a concatenated (rope) string, flattened only when used.
  'no-op sink': () => {},
  // Formatting plus what any real sink does first: turn the string into UTF-8 bytes.
  'UTF-8 length': (s) => { bytes += Buffer.byteLength(s); },
  '/dev/null, sync write': (s) => { writeSync(devnull, s); },
};
const loggers = { 'hand-written': (o) => new HandWrittenLogger(o), 'Logger (pino)': (o) => new Logger(o) };

/** CPU time (user + system) in ns: on a shared host it is disturbed far less than wall-clock time. */
function cpuNs() {
  const u = process.cpuUsage();
  return (u.user + u.system) * 1000;
}

/** CPU ns per logged line, CPU ns per call below the level. */
function run(logger) {
  const line = (i) => logger.info('request failed', { cmd: 1, offset: i * 4096, length: 4096, errno: 5, err: 'EIO: i/o error' });
  for (let i = 0; i < 10_000; i++) line(i);
  let t = cpuNs();
  for (let i = 0; i < LINES; i++) line(i);
  const perLine = (cpuNs() - t) / LINES;
  t = cpuNs();
  for (let i = 0; i < LINES * 10; i++) logger.debug('dropped', { cmd: 1, offset: i });
  return [perLine, (cpuNs() - t) / (LINES * 10)];
}

// Rounds interleave every case, so a drifting host load hits them alike.
const best = new Map();
for (let r = 0; r < ROUNDS; r++) {
  for (const [sinkName, write] of Object.entries(sinks)) {
    for (const [name, make] of Object.entries(loggers)) {
      const [a, b] = run(make({ level: 'info', write }).child({ component: 'nbd', conn: 7 }).child({ volume: 'v1' }));
      const key = `| ${name} | ${sinkName} |`;
      const prev = best.get(key) ?? [Infinity, Infinity];
      best.set(key, [Math.min(prev[0], a), Math.min(prev[1], b)]);
    }
  }
}
console.log(`| logger | sink | CPU ns/line | k lines/s per core | below-level call, CPU ns |\n|---|---|---:|---:|---:|`);
for (const [key, [a, b]] of best) console.log(`${key} ${a.toFixed(0)} | ${(1e6 / a).toFixed(0)} | ${b.toFixed(1)} |`);
