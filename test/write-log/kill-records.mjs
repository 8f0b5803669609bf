// What record `seq` carries in the kill test: a pure function of seq, so the
// parent can check any replayed record without talking to the child. Plain
// JavaScript: the child (kill-child.mjs) runs it with node directly, next to
// the built write log in dist/ (types: kill-records.d.mts).
export const KILL_VOLUME = 'kill-test-volume';
const VOLUME_BYTES = 64 << 20;

function mix(n) {
  let h = (n ^ 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export function recordFor(seq) {
  const h = mix(seq);
  if (seq % 29 === 0) return { type: 'marker', offset: 0, length: 0, payload: { snapshot: `snap-${seq}` } };
  const length = 1 + (h % 16384);
  const offset = mix(seq + 1_000_003) % (VOLUME_BYTES - length);
  if (seq % 11 === 0) return { type: 'zero', offset, length };
  const data = Buffer.allocUnsafe(length);
  let x = h || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13; x >>>= 0; x ^= x >>> 17; x ^= x << 5; x >>>= 0;
    data[i] = x & 0xff;
  }
  return { type: 'write', offset, length, data };
}
