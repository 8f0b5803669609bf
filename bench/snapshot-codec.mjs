// Block codec candidates on realistic data: a corpus of OS files (shared
// libraries, executables, Python sources, headers, docs, node_modules) cut
// into 512 KiB blocks (zero blocks dropped, as the snapshot format never
// stores them), plus random blocks (encrypted/compressed content).
// Reports ratio and single-core compress/decompress MiB/s, median of 3 runs.
// snappy is measured only when importable (not a blockgate dependency).
// Usage: node bench/snapshot-codec.mjs [CORPUS_MIB=192]
import { execSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import zlib from 'node:zlib';
import { compressSync, uncompressSync } from 'lz4-napi';

const MIB = Number(process.argv[2] ?? 192);
const BS = 512 * 1024;
const dirs = ['/usr/lib/x86_64-linux-gnu', '/usr/share/doc', '/usr/lib/python3', '/usr/bin', '/usr/include', 'node_modules'];
const per = Math.floor((MIB * 1048576) / dirs.length);
const parts = dirs.map((d) => { try { return execSync(`tar cf - ${d} 2>/dev/null | head -c ${per}`, { maxBuffer: per + 1024, shell: '/bin/bash' }); } catch (e) { return e.stdout ?? Buffer.alloc(0); } });
const corpus = Buffer.concat(parts);
const blocks = [];
for (let o = 0; o + BS <= corpus.length; o += BS) { const b = corpus.subarray(o, o + BS); if (b.some((x) => x !== 0)) blocks.push(b); }
const random = Array.from({ length: 64 }, () => randomBytes(BS));

function probe(b) {
  const s = Buffer.allocUnsafe(8 * 4096); const step = Math.floor(b.length / 8);
  for (let i = 0; i < 8; i++) b.copy(s, i * 4096, i * step, i * step + 4096);
  return compressSync(s).length < s.length * (15 / 16);
}
const codecs = {
  'lz4 (lz4-napi)': [(b) => compressSync(b), (c) => uncompressSync(c)],
  'lz4 + probe (chosen)': [(b) => (probe(b) ? compressSync(b) : b), (c, b) => (c === b ? c : uncompressSync(c))],
  'deflate level 1 (zlib)': [(b) => zlib.deflateRawSync(b, { level: 1 }), (c) => zlib.inflateRawSync(c)],
  'brotli quality 1 (zlib)': [(b) => zlib.brotliCompressSync(b, { params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 1 } }), (c) => zlib.brotliDecompressSync(c)],
};
try { const snappy = await import('snappy'); codecs['snappy'] = [(b) => snappy.compressSync(b), (c) => snappy.uncompressSync(c)]; } catch { /* optional */ }

const median = (a) => a.sort((x, y) => x - y)[Math.floor(a.length / 2)];
console.log(`corpus: ${blocks.length} non-zero blocks of 512 KiB (${(blocks.length / 2).toFixed(0)} MiB); random: ${random.length} blocks`);
console.log(['codec', 'set', 'ratio', 'compress MiB/s', 'decompress MiB/s'].join('\t'));
for (const [name, [c, d]] of Object.entries(codecs)) {
  for (const [set, data] of [['corpus', blocks], ['random', random]]) {
    const ct = [], dt = []; let inB = 0, outB = 0;
    for (let run = 0; run < 3; run++) {
      inB = 0; outB = 0; const outs = [];
      let t = process.hrtime.bigint();
      for (const b of data) { const o = c(b); outs.push(o); inB += b.length; outB += Math.min(o.length, b.length); }
      ct.push(Number(process.hrtime.bigint() - t) / 1e9);
      t = process.hrtime.bigint();
      for (let i = 0; i < outs.length; i++) d(outs[i], data[i]);
      dt.push(Number(process.hrtime.bigint() - t) / 1e9);
    }
    console.log([name, set, (inB / outB).toFixed(2), (inB / 1048576 / median(ct)).toFixed(0), (inB / 1048576 / median(dt)).toFixed(0)].join('\t'));
  }
}
