// Store factories for the snapshot suites: the filesystem store always, and
// Ceph RGW when the global setup provides inject('s3') (one fresh bucket per
// factory call; required under CI).
import { rmSync } from 'node:fs';
import { inject } from 'vitest';
import { FsObjectStore } from '../../src/object-store/fs.js';
import { openObjectStore } from '../../src/object-store/open.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { tempDir as registeredTempDir } from '../harness/cleanup.js';
import { isCI } from '../harness/prereq.js';
import { createTestBucket } from '../harness/rgw.js';

export interface S3Coordinates {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  region?: string;
  bucket?: string;
}

export function s3Coordinates(): S3Coordinates | undefined {
  try {
    return (inject as unknown as (k: string) => S3Coordinates | undefined)('s3');
  } catch {
    return undefined;
  }
}

export interface StoreFactory {
  name: string;
  /** A fresh, empty store plus its URL (for the CLI) and a cleanup. */
  create(): Promise<{ store: ObjectStore; url: string; env: Record<string, string>; cleanup: () => Promise<void> }>;
}

export function tempDir(prefix = 'bg-snap-'): string {
  return registeredTempDir(prefix);
}

let bucketSeq = 0;

export function storeFactories(): StoreFactory[] {
  const out: StoreFactory[] = [{
    name: 'fs',
    async create() {
      const dir = tempDir('bg-snap-store-');
      const store = await FsObjectStore.open(dir, { durable: false });
      return { store, url: `file://${dir}`, env: {}, cleanup: async () => { await store.close(); rmSync(dir, { recursive: true, force: true }); } };
    },
  }];
  const s3 = s3Coordinates();
  // The whole suite's global setup always provides RGW; only a run without it (the unit tier) lacks it.
  if (!s3 && isCI()) throw new Error("no S3 coordinates (inject('s3')) under CI: the snapshot suites must run against RGW (vitest.config.ts)");
  if (s3) {
    out.push({
      name: 'rgw',
      async create() {
        const bucket = s3.bucket ?? await createTestBucket({ region: 'us-east-1', ...s3 }, 'bg-snap');
        const prefix = `t${Date.now().toString(36)}${bucketSeq++}`;
        const url = `s3://${bucket}/${prefix}`;
        const store = await openObjectStore(url, { endpoint: s3.endpoint, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, region: s3.region ?? 'us-east-1', forcePathStyle: true });
        const env = { AWS_ENDPOINT_URL: s3.endpoint, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey, AWS_REGION: s3.region ?? 'us-east-1' };
        return { store, url, env, cleanup: async () => { await store.close(); } };
      },
    });
  }
  return out;
}

