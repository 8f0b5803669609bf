// Opens the configured object store (top-level `store:`): the base store
// (fs, or S3 behind retries: see object-store/open.ts). The daemon stacks its
// own wrappers on top (bandwidth limit, per-mode metrics: daemon.ts). Tests
// may set BLOCKGATE_TEST_FAULTS (object-store/fault.ts) to wrap the base store
// in injected faults or latency; a warning in the log says so.
import type { Logger } from '../log.js';
import { FaultInjectingObjectStore, TEST_FAULTS_ENV, faultOptionsFromEnv } from '../object-store/fault.js';
import { openObjectStore } from '../object-store/open.js';
import type { ObjectStore } from '../object-store/object-store.js';
import type { StoreConfig } from './config.js';

export async function openStore(cfg: StoreConfig, logger: Logger): Promise<ObjectStore> {
  const faults = faultOptionsFromEnv();
  const store = await openObjectStore(cfg.url, {
    ...(cfg.endpoint !== undefined ? { endpoint: cfg.endpoint } : {}),
    ...(cfg.region !== undefined ? { region: cfg.region } : {}),
    ...(cfg.accessKeyId !== undefined ? { accessKeyId: cfg.accessKeyId } : {}),
    ...(cfg.secretAccessKey !== undefined ? { secretAccessKey: cfg.secretAccessKey } : {}),
    ...(cfg.pathStyle !== undefined ? { forcePathStyle: cfg.pathStyle } : {}),
    logger,
  });
  if (!faults) return store;
  logger.warn(`${TEST_FAULTS_ENV} is set: the object store injects test faults`, { rules: faults.rules?.length ?? 0 });
  return new FaultInjectingObjectStore(store, faults);
}
