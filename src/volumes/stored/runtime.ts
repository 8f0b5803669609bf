// StoredRuntime: everything the daemon needs for `mode: stored` volumes,
// assembled once: the shared object store (top-level `store:`), the snapshot
// store, the shared upload worker pool, one StoredVolume + VolumeUploader
// per volume, the snapshot coordinator (admin routes), scheduled snapshots,
// status details and Prometheus gauges.
// States: created (volumes open as the daemon assembles them) -> running
// (start(): uploaders and schedules on) -> stopping (stopBackground(): timers
// off, uploaders stopped; in-flight upload sessions aborted, the log keeps
// what they had not committed) -> closed (close(): object store closed).
import { withUploadStatus, type UploadStatusFields } from '../../uploader/upload-lag.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { AdminRoute } from '../../daemon/admin-api.js';
import type { StoreConfig, StoredVolumeConfig } from '../../daemon/config.js';
import type { MetricFamily } from '../../daemon/metrics.js';
import { FaultInjectingObjectStore, TEST_FAULTS_ENV, faultOptionsFromEnv } from '../../object-store/fault.js';
import { openObjectStore } from '../../object-store/open.js';
import type { ObjectStore } from '../../object-store/object-store.js';
import { SnapshotStore } from '../../snapshots/index.js';
import { UploadPool } from '../../uploader/pool.js';
import { VolumeUploader } from '../../uploader/uploader.js';
import { SnapshotCoordinator, readGroup, type GroupView } from './coordinator.js';
import { StoredVolume, type StoredVolumeDetails } from './stored-volume.js';

export type StoredVolumeStatus = StoredVolumeDetails & UploadStatusFields;

/**
 * The daemon's store. Tests may set BLOCKGATE_TEST_FAULTS (fault.ts) to wrap
 * it in injected faults or latency; a warning says so in the log.
 */
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

export class StoredRuntime {
  readonly volumes = new Map<string, StoredVolume>();
  readonly uploaders = new Map<string, VolumeUploader>();
  readonly coordinator: SnapshotCoordinator;
  readonly pool: UploadPool;
  private readonly configs = new Map<string, StoredVolumeConfig>();
  /** Snapshot schedule timer per volume: from the config at start(), replaced by setSchedule(). */
  private readonly schedules = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  private started = false;

  private constructor(
    readonly store: ObjectStore, readonly snaps: SnapshotStore, workers: number, private readonly logger: Logger,
    /** The runtime opened the store itself (else its owner, the daemon, closes it). */
    private readonly ownsStore: boolean,
  ) {
    this.pool = new UploadPool({ workers });
    this.coordinator = new SnapshotCoordinator(store, snaps, this.volumes, logger.child({ component: 'snapshots' }));
  }

  static async create(cfg: StoreConfig, logger: Logger, store?: ObjectStore): Promise<StoredRuntime> {
    const s = store ?? (await openStore(cfg, logger));
    return new StoredRuntime(s, new SnapshotStore(s, { logger }), cfg.uploadWorkers, logger, store === undefined);
  }

  async openVolume(v: StoredVolumeConfig, logger: Logger): Promise<StoredVolume> {
    let restoreFrom = v.restoreFrom;
    if (restoreFrom?.startsWith('vsnap-')) {
      const rec = await readGroup(this.store, restoreFrom);
      const m = rec.members.find((x) => x.volume === v.name);
      if (!m?.snapshot) throw new BlockgateError(ErrorCodes.CONFIG, `volume ${v.name}: snapshot ${restoreFrom} has no member for this volume (members: ${rec.members.map((x) => x.volume).join(', ')})`);
      restoreFrom = m.snapshot;
    }
    const vol = await StoredVolume.open({
      name: v.name, disk: v.disk, ...(v.size !== undefined ? { size: v.size } : {}), logDir: v.writeLog.dir,
      logCapacityBytes: v.writeLog.size, blockSize: v.blockSize, snaps: this.snaps, logger,
      ...(restoreFrom !== undefined ? { restoreFrom } : {}),
    });
    this.volumes.set(v.name, vol);
    this.configs.set(v.name, v);
    const uploader = new VolumeUploader(vol, this.pool, {
      logger: logger.child({ component: 'uploader' }), hooks: this.coordinator, minIntervalMs: v.uploadIntervalMs,
    });
    this.uploaders.set(v.name, uploader);
    if (this.started && !this.stopped) uploader.start(); // a volume created at run time starts shadowing at once
    return vol;
  }

  async start(): Promise<void> {
    this.started = true;
    await this.coordinator.init().catch((err) => this.logger.warn('could not load snapshot records (store unreachable?)', { err: errorMessage(err) }));
    for (const u of this.uploaders.values()) u.start();
    for (const [name, v] of this.configs) {
      if (!v.snapshots) continue;
      const { intervalMs, keep } = v.snapshots;
      const t = setInterval(() => void this.scheduled(name, keep), intervalMs);
      t.unref();
      this.schedules.set(name, t);
    }
  }

  /**
   * Replaces a volume's snapshot schedule at run time (control channel):
   * every `intervalMs` a snapshot, keeping the newest `keep` scheduled ones;
   * intervalMs null turns the schedule off. It replaces the config's schedule
   * until the next restart (not persisted).
   */
  setSchedule(name: string, intervalMs: number | null, keep: number | undefined): { volume: string; intervalMs: number | null; keep: number | null } {
    if (!this.volumes.has(name)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `no stored volume named ${JSON.stringify(name)}`);
    const old = this.schedules.get(name);
    if (old) clearInterval(old);
    this.schedules.delete(name);
    if (intervalMs !== null && !this.stopped) {
      const t = setInterval(() => void this.scheduled(name, keep), intervalMs);
      t.unref();
      this.schedules.set(name, t);
    }
    return { volume: name, intervalMs, keep: keep ?? null };
  }

  private async scheduled(name: string, keep: number | undefined): Promise<void> {
    if (this.stopped) return;
    try {
      const g = await this.coordinator.create([name], { origin: 'schedule', description: 'scheduled' });
      this.logger.info('scheduled snapshot started', { volume: name, snapshot: g.id });
      if (keep === undefined) return;
      const done = await this.coordinator.wait(g.id, 24 * 3600_000);
      if (done.state !== 'complete') return;
      const mine = (await this.coordinator.list(name)).filter((s) => s.origin === 'schedule' && s.state === 'complete' && s.members.length === 1);
      for (const old of mine.slice(0, Math.max(0, mine.length - keep))) {
        await this.coordinator.delete(old.id);
        this.logger.info('scheduled snapshot expired', { volume: name, snapshot: old.id, keep });
      }
    } catch (err) {
      this.logger.warn('scheduled snapshot failed', { volume: name, err: errorMessage(err) });
    }
  }

  routes(): AdminRoute[] {
    return [
      {
        method: 'POST', path: '/v1/snapshots',
        handler: async (req): Promise<GroupView> => {
          const b = (req.body ?? {}) as { volumes?: unknown; description?: unknown; waitSeconds?: unknown };
          if (!Array.isArray(b.volumes) || b.volumes.some((x) => typeof x !== 'string')) {
            throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'body must be {"volumes": ["name", ...], "description"?: string, "waitSeconds"?: number}');
          }
          const g = await this.coordinator.create(b.volumes as string[], typeof b.description === 'string' ? { description: b.description } : {});
          const wait = typeof b.waitSeconds === 'number' && b.waitSeconds > 0 ? Math.min(b.waitSeconds, 3600) * 1000 : 0;
          return wait > 0 ? this.coordinator.wait(g.id, wait) : g;
        },
      },
      {
        method: 'GET', path: '/v1/snapshots',
        handler: async (req) => ({ snapshots: await this.coordinator.list(req.query.get('volume') ?? undefined) }),
      },
      {
        method: 'GET', path: '/v1/snapshots/:id',
        handler: async (req) => {
          const wait = Number(req.query.get('waitSeconds') ?? '0');
          return wait > 0 ? this.coordinator.wait(req.params.id!, Math.min(wait, 3600) * 1000) : this.coordinator.get(req.params.id!);
        },
      },
      {
        method: 'DELETE', path: '/v1/snapshots/:id',
        handler: async (req) => { await this.coordinator.delete(req.params.id!); return { deleted: req.params.id }; },
      },
    ];
  }

  details(name: string): StoredVolumeStatus | undefined {
    const vol = this.volumes.get(name);
    const up = this.uploaders.get(name);
    if (!vol || !up) return undefined;
    return withUploadStatus(vol.details(), vol, up);
  }

  metrics(): MetricFamily[] {
    const rows = [...this.volumes.keys()].map((n) => [n, this.details(n)!] as const);
    const g = (name: string, help: string, f: (s: StoredVolumeStatus) => number, type: 'gauge' | 'counter' = 'gauge'): MetricFamily => ({
      name, help, type, samples: rows.map(([volume, s]) => ({ labels: { volume }, value: f(s) })),
    });
    return [
      g('blockgate_stored_log_used_bytes', 'Write log bytes in use (stored volumes).', (s) => s.log.usedBytes),
      g('blockgate_stored_log_capacity_bytes', 'Write log capacity.', (s) => s.log.capacityBytes),
      g('blockgate_stored_log_waiting_writers', 'Writes waiting for log space (backpressure).', (s) => s.log.waitingWriters),
      g('blockgate_stored_upload_lag_seconds', 'Age of the oldest write not yet in the object store (RPO).', (s) => s.upload.lagSeconds),
      g('blockgate_stored_upload_lag_bytes', 'Log bytes not yet in the object store.', (s) => s.upload.lagBytes),
      g('blockgate_stored_upload_throughput_bytes_per_second', 'Upload throughput over the last 10 s.', (s) => s.upload.throughputBytesPerSec),
      g('blockgate_stored_uploaded_bytes_total', 'Block bytes uploaded.', (s) => s.upload.uploadedBytes, 'counter'),
      g('blockgate_stored_upload_retrying', '1 while uploads are failing and being retried.', (s) => (s.upload.state === 'retrying' ? 1 : 0)),
      g('blockgate_stored_last_snapshot_timestamp_seconds', 'Creation time of the newest root in the store.', (s) => (s.root ? Math.floor(Date.parse(s.root.createdAt) / 1000) : 0)),
      g('blockgate_stored_restore_blocks_remaining', 'Blocks a lazy restore still has to fetch.', (s) => (s.restore ? s.restore.totalBlocks - s.restore.restoredBlocks : 0)),
    ];
  }

  /** Timers off, uploaders stopped (before the volumes close). */
  async stopBackground(): Promise<void> {
    this.stopped = true;
    for (const t of this.schedules.values()) clearInterval(t);
    await Promise.all([...this.uploaders.values()].map((u) => u.stop()));
    this.pool.close();
  }

  async close(): Promise<void> {
    if (this.ownsStore) await this.store.close().catch(() => undefined);
  }
}
