// DeviceFactory implementations for the store-backed volume modes, for the
// BlockDevice compliance suite (compliance.ts):
//   - StoredVolume: local disk + write log; reopen = open the same disk and
//     log dir again (redo re-applies the unreleased log);
//   - CachedVolume: write log + chunk cache over an object store; reopen =
//     open the same log dir, cache dir and store again.
// With `uploads`, each volume runs under its runtime (Stored/CachedRuntime:
// uploader on, short interval), so the suite also runs while roots commit,
// the log is released and (cached) reads move to the cache and the store.
// close() on such a device stops the runtime's background work first.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import type { BlockDevice } from '../../src/block-device/block-device.js';
import { Logger } from '../../src/log.js';
import { FsObjectStore } from '../../src/object-store/fs.js';
import type { ObjectStore } from '../../src/object-store/object-store.js';
import { SnapshotStore } from '../../src/snapshots/index.js';
import { CachedVolume } from '../../src/volumes/cached/cached-volume.js';
import type { CachedVolumeConfig } from '../../src/volumes/cached/config.js';
import { CachedRuntime } from '../../src/volumes/cached/runtime.js';
import { StoredVolume } from '../../src/volumes/stored/stored-volume.js';
import { StoredRuntime } from '../../src/volumes/stored/runtime.js';
import type { StoredVolumeConfig } from '../../src/daemon/config.js';
import type { DeviceFactory } from './compliance.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const logger = new Logger({ level: (process.env.BLOCKGATE_TEST_LOG as 'debug' | undefined) ?? 'silent', format: 'text' });

export interface VolumeFactoryOptions {
  /** Run each volume under its runtime with the uploader on. */
  uploads?: boolean;
  /** The object store (default: a new FsObjectStore in the factory's temp dir). Closed by dispose() only when the factory made it. */
  store?: () => Promise<ObjectStore>;
}

/** `dev` whose close() first runs `before` (stops the runtime's background work). */
function closingWith(dev: BlockDevice, before: () => Promise<void>): BlockDevice {
  return new Proxy(dev, {
    get(target, prop) {
      if (prop === 'close') return async () => { await before(); await target.close(); };
      const v = Reflect.get(target, prop, target) as unknown;
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(target) : v;
    },
  });
}

/** A temp dir and an object store, made on first use and removed by dispose(). */
class Workspace {
  private dir: string | undefined;
  private storePromise: Promise<ObjectStore> | undefined;
  private n = 0;
  constructor(private readonly prefix: string, private readonly makeStore: (() => Promise<ObjectStore>) | undefined) {}

  async next(): Promise<{ dir: string; name: string; store: ObjectStore }> {
    this.dir ??= await mkdtemp(join(tmpdir(), this.prefix));
    this.storePromise ??= this.makeStore ? this.makeStore() : FsObjectStore.open(join(this.dir, 'store'));
    const name = `v${this.n++}`;
    return { dir: join(this.dir, name), name, store: await this.storePromise };
  }

  async dispose(): Promise<void> {
    if (this.storePromise) await (await this.storePromise).close().catch(() => undefined);
    if (this.dir) await rm(this.dir, { recursive: true, force: true });
  }
}

export function storedFactory(o: VolumeFactoryOptions = {}): DeviceFactory {
  const ws = new Workspace('blockgate-stored-compliance-', o.store);
  const configs = new WeakMap<BlockDevice, { cfg: StoredVolumeConfig; store: ObjectStore }>();
  const runtimes: StoredRuntime[] = [];

  async function open(cfg: StoredVolumeConfig, store: ObjectStore): Promise<BlockDevice> {
    let dev: BlockDevice;
    if (o.uploads) {
      const rt = StoredRuntime.create(store, logger, { uploadWorkers: 4 });
      runtimes.push(rt);
      const vol = await rt.openVolume(cfg, logger);
      await rt.start();
      dev = closingWith(vol, () => rt.stopBackground());
    } else {
      dev = await StoredVolume.open({
        name: cfg.name, disk: cfg.disk, ...(cfg.size !== undefined ? { size: cfg.size } : {}), logDir: cfg.writeLog.dir,
        logCapacityBytes: cfg.writeLog.size, blockSize: cfg.blockSize, snaps: new SnapshotStore(store), logger,
      });
    }
    configs.set(dev, { cfg, store });
    return dev;
  }

  return {
    async create(size) {
      const { dir, name, store } = await ws.next();
      const cfg: StoredVolumeConfig = {
        name, mode: 'stored', size, disk: join(dir, 'disk.img'), readOnly: false, description: undefined, tls: 'off',
        writeLog: { dir: join(dir, 'log'), size: 128 * MiB }, blockSize: 64 * KiB, snapshots: undefined, restoreFrom: undefined,
        uploadIntervalMs: 50,
      };
      return open(cfg, store);
    },
    async reopen(device) {
      const { cfg, store } = configs.get(device)!;
      return open({ ...cfg, size: undefined }, store); // the size comes from the volume's state now
    },
    async dispose() {
      for (const rt of runtimes) await rt.stopBackground().catch(() => undefined);
      await ws.dispose();
    },
  };
}

export function cachedFactory(o: VolumeFactoryOptions = {}): DeviceFactory {
  const ws = new Workspace('blockgate-cached-compliance-', o.store);
  const configs = new WeakMap<BlockDevice, { cfg: CachedVolumeConfig; store: ObjectStore; dataDir: string }>();
  const runtimes: CachedRuntime[] = [];

  async function open(cfg: CachedVolumeConfig, store: ObjectStore, dataDir: string): Promise<BlockDevice> {
    let dev: BlockDevice;
    if (o.uploads) {
      const rt = CachedRuntime.create(store, logger, { dataDir, uploadWorkers: 4 });
      runtimes.push(rt);
      const vol = await rt.openVolume(cfg, logger);
      await rt.start();
      dev = closingWith(vol, () => rt.stopBackground());
    } else {
      dev = await CachedVolume.open({
        name: cfg.name, ...(cfg.size !== undefined ? { size: cfg.size } : {}), blockSize: cfg.blockSize,
        logDir: cfg.writeLog.dir, logCapacityBytes: cfg.writeLog.size, cacheDir: cfg.cache.dir, cacheCapacityBytes: cfg.cache.size,
        store, snaps: new SnapshotStore(store), readAheadBlocks: cfg.readAheadBlocks, logger,
      });
    }
    configs.set(dev, { cfg, store, dataDir });
    return dev;
  }

  return {
    async create(size) {
      const { dir, name, store } = await ws.next();
      const cfg: CachedVolumeConfig = {
        name, mode: 'cached', size, readOnly: false, description: undefined, tls: 'off',
        // A cache smaller than the volume: reads after uploads also evict and refetch.
        cache: { dir: join(dir, 'cache'), size: Math.max(4 * MiB, size / 4) }, writeLog: { dir: join(dir, 'log'), size: 128 * MiB },
        blockSize: 64 * KiB, fromSnapshot: undefined, uploadIntervalMs: 50, readAheadBlocks: 4,
        lease: { ttlMs: 60_000, takeover: 'expired' },
      };
      return open(cfg, store, join(dir, 'data'));
    },
    async reopen(device) {
      const { cfg, store, dataDir } = configs.get(device)!;
      return open(cfg, store, dataDir);
    },
    async dispose() {
      for (const rt of runtimes) await rt.stopBackground().catch(() => undefined);
      await ws.dispose();
    },
  };
}
