import { defineConfig } from 'vitest/config';

// The unit tier (`npm run test:unit`): no global setup, so no Ceph RGW, and no
// test here needs root, a VM or an external tool; only the built native addon
// (the script builds first). Well under a minute on two cores. These files are
// also part of the whole suite (vitest.config.ts).
export const unitTests = [
  'test/unit/**/*.test.ts',
  // Pure formats and the native addon's CRC, kept next to their peers' tests.
  // (The write log's seeded crash and extent-map models are pure too, but take
  // ~15 s each: they stay in the whole suite only.)
  'test/write-log/format.test.ts',
  'test/snapshots/format.test.ts',
  'test/chunk-cache/native-verify.test.ts',
];

export default defineConfig({
  test: {
    include: unitTests,
    setupFiles: ['test/harness/file-end.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    reporters: ['default'],
  },
});
