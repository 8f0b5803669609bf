import { defineConfig } from 'vitest/config';

// The unit tier (`npm run test:unit`): no global setup, so no Ceph RGW, and no
// test here needs root, a VM or an external tool; only the built native addon
// (`npm run build` once). Well under a minute on two cores. These files are
// also part of the whole suite (vitest.config.ts).
export const unitTests = [
  'test/unit/**/*.test.ts',
  // Pure formats, parsers and in-memory models kept next to their peers' tests.
  'test/write-log/extent-map.test.ts',
  'test/write-log/format.test.ts',
  'test/write-log/crash.test.ts',
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
