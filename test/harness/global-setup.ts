// Runs once before all test files. Starts the shared external peers the suite
// needs (Ceph RGW for S3 tests) and hands their coordinates to the tests
// through vitest's provide/inject.
//
// S3: a fresh single-node Ceph RGW is started for every run (~15 s) and
// provided as inject('s3') (see test/harness/rgw.ts: createTestBucket). To
// reuse an already running S3 server instead, set BLOCKGATE_TEST_S3_ENDPOINT,
// BLOCKGATE_TEST_S3_ACCESS_KEY_ID and BLOCKGATE_TEST_S3_SECRET_ACCESS_KEY.
// If RGW cannot start the run fails (with or without CI): S3 tests are required.
import type { TestProject } from 'vitest/node';
import { startRgw, type S3TestCoordinates } from './rgw.js';

declare module 'vitest' {
  export interface ProvidedContext {
    s3: S3TestCoordinates;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const teardowns: Array<() => Promise<void>> = [];

  // --- S3 (Ceph RGW) ---
  let s3: S3TestCoordinates;
  const reuse = process.env['BLOCKGATE_TEST_S3_ENDPOINT'];
  if (reuse) {
    s3 = {
      endpoint: reuse,
      accessKeyId: process.env['BLOCKGATE_TEST_S3_ACCESS_KEY_ID'] ?? '',
      secretAccessKey: process.env['BLOCKGATE_TEST_S3_SECRET_ACCESS_KEY'] ?? '',
      region: process.env['BLOCKGATE_TEST_S3_REGION'] ?? 'us-east-1',
    };
  } else {
    const rgw = await startRgw();
    teardowns.push(() => rgw.stop());
    s3 = { endpoint: rgw.endpoint, accessKeyId: rgw.accessKeyId, secretAccessKey: rgw.secretAccessKey, region: rgw.region };
    process.env['BLOCKGATE_TEST_S3_ENDPOINT'] = s3.endpoint;
    process.env['BLOCKGATE_TEST_S3_ACCESS_KEY_ID'] = s3.accessKeyId;
    process.env['BLOCKGATE_TEST_S3_SECRET_ACCESS_KEY'] = s3.secretAccessKey;
    process.env['BLOCKGATE_TEST_S3_REGION'] = s3.region;
  }
  project.provide('s3', s3);

  return async () => {
    for (const t of teardowns.reverse()) await t();
    if (!reuse) for (const k of ["ENDPOINT", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION"]) delete process.env[`BLOCKGATE_TEST_S3_${k}`];
  };
}
