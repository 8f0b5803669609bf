// Runs once before all test files. Starts the shared external peers the suite
// needs (Ceph RGW for S3 tests) and hands their coordinates to the tests
// through vitest's provide/inject.
import type { TestProject } from 'vitest/node';

export default async function setup(_project: TestProject): Promise<() => Promise<void>> {
  const teardowns: Array<() => Promise<void>> = [];
  return async () => {
    for (const t of teardowns.reverse()) await t();
  };
}
