// Runs the BlockDevice compliance suite on CachedVolume (write log + chunk
// cache over an object store): bare on an fs store (every read overlays the
// log), and under CachedRuntime with uploads on (the live root advances while
// the suite runs, the log is released, reads move to the cache and the
// store), on an fs store and on the shared Ceph RGW. Reopen opens the same
// log, cache and store again.
import { randomBytes } from 'node:crypto';
import { inject } from 'vitest';

import { openObjectStore } from '../../src/object-store/open.js';
import { createTestBucket } from '../harness/rgw.js';
import { blockDeviceCompliance } from './compliance.js';
import { cachedFactory } from './volume-factories.js';

const MiB = 1024 * 1024;

blockDeviceCompliance('CachedVolume (fs store, log only)', cachedFactory(), { size: 32 * MiB, reopenReadOnly: false });
blockDeviceCompliance('CachedVolume under CachedRuntime (fs store, uploads on)', cachedFactory({ uploads: true }), { size: 32 * MiB, reopenReadOnly: false });

const s3 = inject('s3');
blockDeviceCompliance('CachedVolume under CachedRuntime (Ceph RGW, uploads on)', cachedFactory({
  uploads: true,
  store: async () => openObjectStore(`s3://${await createTestBucket(s3, 'bd-compliance')}/c-${randomBytes(4).toString('hex')}`, {
    endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, forcePathStyle: true,
  }),
}), { size: 16 * MiB, reopenReadOnly: false });
