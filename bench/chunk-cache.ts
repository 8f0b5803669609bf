// ChunkCache hit path vs its peer, a plain pread of the same bytes (not a
// test). 512 KiB blocks, page cache warm on both sides, random block order,
// queue depths 1 and 4; rounds alternate between the contenders and the
// median MiB/s is reported with the ratio cache / pread.
//   cache.read: verified (CRC32C per 4 KiB unit) read straight into a caller buffer
//   cache.get:  verified read into a freshly allocated Buffer (whole blocks only)
// READ=4096 reads 4 KiB at a random page of a random block instead of whole
// blocks (the NBD random-read case: cache.read then takes the RWF_NOWAIT path;
// the peer is a FileHandle pread, i.e. always the thread pool).
//
//   npx tsc --ignoreConfig --outDir var/bench --rootDir . --module nodenext --target es2022 --skipLibCheck --types node bench/chunk-cache.ts \
//     && BLOCKGATE_NATIVE_ADDON=$PWD/build/Release/blockgate_native.node node var/bench/bench/chunk-cache.js [dir]   (default /var/tmp)
//   (the addon path is needed: compiled to var/bench/, the loader does not find build/; without the addon
//   the cache has no RWF_NOWAIT path and checks pool reads on the event loop)
//   SECONDS=2 ROUNDS=5 BLOCKS=256 (128 MiB)
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { ChunkCache } from '../src/chunk-cache/index.js';

const BS = 512 * 1024;
const SECONDS = Number(process.env['SECONDS'] ?? 2);
const ROUNDS = Number(process.env['ROUNDS'] ?? 5);
const BLOCKS = Number(process.env['BLOCKS'] ?? 256);
const READ = Number(process.env['READ'] ?? BS);
if (!(READ > 0 && READ <= BS && BS % READ === 0)) throw new Error(`READ must divide ${BS}`);
const PER_BLOCK = BS / READ;

const dir = await mkdtemp(join(process.argv[2] ?? '/var/tmp', 'blockgate-cachebench-'));
try {
  const blocks = Array.from({ length: BLOCKS }, () => randomBytes(BS));
  const cache = await ChunkCache.open({ dir: join(dir, 'cache'), blockSize: BS, capacityBytes: BLOCKS * BS, indexFlushMs: 0 });
  for (let i = 0; i < BLOCKS; i++) if (!(await cache.put(`b${i}`, blocks[i]!))) throw new Error(`block ${i} was not cached`);
  await cache.flush();
  const plain = await open(join(dir, 'plain.img'), 'w+');
  for (let i = 0; i < BLOCKS; i++) await plain.write(blocks[i]!, 0, BS, i * BS);
  const never = async (): Promise<Buffer> => { throw new Error('benchmark block missed the cache'); };

  /** Read number i: block i % BLOCKS, piece (i / BLOCKS) % PER_BLOCK. */
  type Op = (i: number, buf: Buffer) => Promise<unknown>;
  const at = (i: number): [number, number] => [i % BLOCKS, (Math.floor(i / BLOCKS) % PER_BLOCK) * READ];
  const contenders: Array<[string, Op]> = [
    ['pread', (i, buf) => { const [b, off] = at(i); return plain.read(buf, 0, READ, b * BS + off); }],
    ['cache.read', (i, buf) => { const [b, off] = at(i); return cache.read(`b${b}`, never, buf, off); }],
    ...(READ === BS ? [['cache.get', (i: number) => cache.get(`b${i % BLOCKS}`, never)] as [string, Op]] : []),
  ];

  /** MiB/s of `op` at queue depth `qd` for SECONDS. */
  const run = async (op: Op, qd: number): Promise<number> => {
    const deadline = performance.now() + SECONDS * 1000;
    let n = 0;
    let seed = 12345;
    const worker = async (): Promise<void> => {
      const buf = Buffer.allocUnsafe(READ);
      while (performance.now() < deadline) { // time-bounded
        seed = (seed * 1103515245 + 12345) >>> 0;
        await op(seed % (BLOCKS * PER_BLOCK), buf);
        n++;
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: qd }, worker));
    return (n * READ) / 1048576 / ((performance.now() - t0) / 1000);
  };

  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  console.log(`chunk cache hit path vs pread: ${BLOCKS} x 512 KiB blocks in ${dir}, ${READ}-byte reads, ${ROUNDS} rounds x ${SECONDS} s, median MiB/s`);
  console.log(`  (load average ${(await import('node:os')).loadavg().map((x) => x.toFixed(1)).join(' ')})`);
  for (const qd of READ === BS ? [1, 4] : [1, 32]) {
    const results = new Map<string, number[]>(contenders.map(([name]) => [name, []]));
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, op] of contenders) results.get(name)!.push(await run(op, qd));
    }
    const base = median(results.get('pread')!);
    const line = contenders.map(([name]) => {
      const m = median(results.get(name)!);
      return `${name} ${m.toFixed(0)}${name === 'pread' ? '' : ` (${(m / base).toFixed(2)}x)`}`;
    });
    console.log(`  qd ${qd}: ${line.join('   ')}`);
  }
  const st = cache.stats();
  if (st.misses !== 0 || st.checksumFailures !== 0) throw new Error(`unexpected misses/CRC failures: ${JSON.stringify(st)}`);
  await plain.close();
  await cache.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
