import { defineConfig } from 'vitest/config';

// The whole suite (`npm test`): real peers (nbd tools, qemu, Ceph RGW) are slow
// to start and share two cores, so test files run one at a time; tests inside
// a file may still overlap. The unit tier (vitest.unit.config.ts) is a subset.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    // After each file: kill its leftover child processes, remove its temp dirs.
    setupFiles: ['test/harness/file-end.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
});
