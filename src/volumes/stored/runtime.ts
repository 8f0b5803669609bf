// StoredRuntime: everything the daemon needs for `mode: stored` volumes,
// assembled once over the object store it is given (the daemon's shared
// store): the snapshot store, the shared upload worker pool, one StoredVolume
// + VolumeUploader per volume, the snapshot coordinator, scheduled snapshots
// and status details. Its operations are typed methods (snapshots, schedules,
// status); the daemon maps them to admin routes, control commands and
// metrics (src/daemon/), and this file imports nothing from there.
// States: created (volumes open as the daemon assembles them) -> running
// (start(): uploaders and schedules on) -> stopping (stopBackground(): timers
// off, uploaders stopped; in-flight upload sessions aborted, the log keeps
// what they had not committed) -> closed (close(); the store is its owner's).
import { withUploadStatus, type UploadStatusFields } from '../../uploader/upload-lag.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { ObjectStore } from '../../object-store/object-store.js';
import { SnapshotStore } from '../../snapshots/index.js';
import { UploadPool } from '../../uploader/pool.js';
import { VolumeUploader } from '../../uploader/uploader.js';
import { SnapshotCoordinator, readGroup, type GroupView } from './coordinator.js';
import type { StoredVolumeSettings } from './config.js';
import { StoredVolume, type StoredVolumeDetails } from './stored-volume.js';

export type StoredVolumeStatus = StoredVolumeDetails & UploadStatusFields;

export interface SnapshotRequestOptions {
  description?: string;
  /** Who asked, recorded with the snapshot: 'manual' (the default), 'control', 'schedule'. */
  origin?: string;
  /** Wait up to this long for the snapshot to complete (0: return at once, pending). */
  waitMs?: number;
}

export class StoredRuntime {
  readonly volumes = new Map<string, StoredVolume>();
  readonly uploaders = new Map<string, VolumeUploader>();
  readonly coordinator: SnapshotCoordinator;
  readonly pool: UploadPool;
  private readonly configs = new Map<string, StoredVolumeSettings>();
  /** Snapshot schedule timer per volume: from the config at start(), replaced by setSchedule(). */
  private readonly schedules = new Map<string, NodeJS.Timeout>();
  private stopped = false;
  private started = false;

  private constructor(readonly store: ObjectStore, readonly snaps: SnapshotStore, workers: number, private readonly logger: Logger) {
    this.pool = new UploadPool({ workers });
    this.coordinator = new SnapshotCoordinator(store, snaps, this.volumes, logger.child({ component: 'snapshots' }));
  }

  /** `store` stays its owner's (the daemon closes it); `uploadWorkers` concurrent uploads shared by all volumes. */
  static create(store: ObjectStore, logger: Logger, options: { uploadWorkers: number }): StoredRuntime {
    return new StoredRuntime(store, new SnapshotStore(store, { logger }), options.uploadWorkers, logger);
  }

  /** Names of the open stored volumes. */
  names(): string[] {
    return [...this.volumes.keys()];
  }

  /** Every volume's status details, by name. */
  statuses(): Array<[name: string, status: StoredVolumeStatus]> {
    return this.names().flatMap((n): Array<[string, StoredVolumeStatus]> => { const d = this.details(n); return d ? [[n, d]] : []; });
  }

  async openVolume(v: StoredVolumeSettings, logger: Logger): Promise<StoredVolume> {
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

  // ------------------------------------------------------------ snapshots (crash-consistent groups)

  /** Starts one all-or-nothing snapshot of `volumes`; waits up to options.waitMs for it to complete. */
  async createSnapshot(volumes: readonly string[], options: SnapshotRequestOptions = {}): Promise<GroupView> {
    const g = await this.coordinator.create(volumes, {
      ...(options.description !== undefined ? { description: options.description } : {}),
      ...(options.origin !== undefined ? { origin: options.origin } : {}),
    });
    return options.waitMs ? this.coordinator.wait(g.id, options.waitMs) : g;
  }

  /** Snapshots (groups), of one volume when given. */
  listSnapshots(volume?: string): Promise<GroupView[]> {
    return this.coordinator.list(volume);
  }

  /** One snapshot; with waitMs, waits up to that long for it to leave the pending state. */
  getSnapshot(id: string, waitMs = 0): Promise<GroupView> {
    return waitMs > 0 ? this.coordinator.wait(id, waitMs) : this.coordinator.get(id);
  }

  deleteSnapshot(id: string): Promise<void> {
    return this.coordinator.delete(id);
  }

  // ------------------------------------------------------------ status

  details(name: string): StoredVolumeStatus | undefined {
    const vol = this.volumes.get(name);
    const up = this.uploaders.get(name);
    if (!vol || !up) return undefined;
    return withUploadStatus(vol.details(), vol, up);
  }

  /** Timers off, uploaders stopped (before the volumes close). */
  async stopBackground(): Promise<void> {
    this.stopped = true;
    for (const t of this.schedules.values()) clearInterval(t);
    await Promise.all([...this.uploaders.values()].map((u) => u.stop()));
    this.pool.close();
  }

  /** The store is its owner's and stays open. */
  async close(): Promise<void> {
    /* volumes are closed by the daemon, uploaders by stopBackground() */
  }
}
