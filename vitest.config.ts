import { defineConfig } from 'vitest/config';

// Real peers (nbd tools, qemu, Ceph RGW) are slow to start and share two
// cores: test files run one at a time; tests inside a file may still overlap.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/harness/global-setup.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 180_000,
    teardownTimeout: 60_000,
    reporters: ['default'],
  },
});
