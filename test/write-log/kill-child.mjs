// Child process of kill.test.ts: appends records whose content is a pure
// function of their seq (recordFor), syncs now and then, prints
// "synced <durableSeq>" after each sync, until killed or `maxOps` is reached.
// Runs the built write log (dist/, `npm run build`) with node itself, so the
// native addon (CRC32C) is the one production loads.
// Usage: node kill-child.mjs <dir> <seed> <maxOps>; prints "ready <newestSeq> <native|no-native>" first.
import { recordFor, KILL_VOLUME } from './kill-records.mjs';

const dist = new URL('../../dist/', import.meta.url);
const { WriteLog } = await import(new URL('write-log/write-log.js', dist).href);
const { nativeAvailable } = await import(new URL('native/index.js', dist).href);

const [dir, seedArg, maxOpsArg] = process.argv.slice(2);
const seed = Number(seedArg);
const maxOps = Number(maxOpsArg);
let x = seed >>> 0 || 1;
const rnd = () => {
  x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
  return x / 4294967296;
};

const wl = await WriteLog.open(dir, { capacityBytes: 1 << 30, segmentBytes: 1 << 20, volumeId: KILL_VOLUME });
process.stdout.write(`ready ${wl.newestSeq} ${nativeAvailable() ? 'native' : 'no-native'}\n`);
let done = 0;
while (done < maxOps) {
  // A burst of 1..4 concurrent appends: seqs are assigned in call order.
  const burst = 1 + Math.floor(rnd() * 4);
  const first = wl.newestSeq + 1;
  const calls = [];
  for (let k = 0; k < burst; k++) {
    const r = recordFor(first + k);
    if (r.type === 'marker') calls.push(wl.appendMarker(r.payload));
    else if (r.type === 'zero') calls.push(wl.appendZero(r.offset, r.length));
    else calls.push(wl.append(r.offset, r.data));
  }
  const seqs = await Promise.all(calls);
  seqs.forEach((s, k) => {
    if (s !== first + k) throw new Error(`expected seq ${first + k}, got ${s}`);
  });
  done += burst;
  if (rnd() < 0.3) {
    // Several concurrent syncs (group commit), then report.
    const d = await Promise.all([wl.sync(), wl.sync()]);
    process.stdout.write(`synced ${Math.min(...d)}\n`);
  }
}
await wl.close();
process.stdout.write('done\n');
