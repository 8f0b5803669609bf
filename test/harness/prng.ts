/** mulberry32: a small, fast, seeded PRNG in [0, 1), so every random test replays from its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The seed of a randomized test: BLOCKGATE_TEST_SEED when set (to replay a
 * run), else a fresh random one. Printed with the test's name, so any failure
 * can be replayed with `BLOCKGATE_TEST_SEED=N npm test -- FILE`.
 */
export function testSeed(what: string): number {
  const env = process.env.BLOCKGATE_TEST_SEED;
  let seed: number;
  if (env !== undefined && env.trim() !== '') {
    seed = Number(env);
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) throw new Error(`BLOCKGATE_TEST_SEED must be an integer in [0, 2^32), got ${JSON.stringify(env)}`);
  } else {
    seed = Math.floor(Math.random() * 0x100000000) >>> 0;
  }
  process.stdout.write(`${what}: seed ${seed} (replay with BLOCKGATE_TEST_SEED=${seed})\n`);
  return seed;
}
