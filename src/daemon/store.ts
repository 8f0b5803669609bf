// Opens the configured object store (top-level `store:`): the base store
// (fs, or S3 behind retries: see object-store/open.ts). The daemon stacks its
// own wrappers on top (bandwidth limit, per-mode metrics: daemon.ts).
import type { Logger } from '../log.js';
import { openObjectStore } from '../object-store/open.js';
import type { ObjectStore } from '../object-store/object-store.js';
import type { StoreConfig } from './config.js';

export async function openStore(cfg: StoreConfig, logger: Logger): Promise<ObjectStore> {
  return openObjectStore(cfg.url, {
    ...(cfg.endpoint !== undefined ? { endpoint: cfg.endpoint } : {}),
    ...(cfg.region !== undefined ? { region: cfg.region } : {}),
    ...(cfg.accessKeyId !== undefined ? { accessKeyId: cfg.accessKeyId } : {}),
    ...(cfg.secretAccessKey !== undefined ? { secretAccessKey: cfg.secretAccessKey } : {}),
    ...(cfg.pathStyle !== undefined ? { forcePathStyle: cfg.pathStyle } : {}),
    logger,
  });
}
