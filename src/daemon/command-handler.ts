// The daemon's side of the control channel: each command the gateway agent
// receives becomes one call here, on the same runtimes the admin API uses.
// Commands are delivered at least once, so every method is idempotent where
// it can be (creating a volume that already exists with the same name fails
// with a clear error rather than creating a second one).
import { BlockgateError, ErrorCodes } from '../errors.js';
import type {
  BandwidthLimits, CreateVolumeSpec, GatewayCommandHandler, SnapshotRequest, SnapshotSchedule,
} from '../control-plane/agent/handler.js';
import type { Logger } from '../log.js';
import type { BandwidthLimitedObjectStore } from '../object-store/bandwidth.js';
import type { CachedRuntime } from '../volumes/cached/runtime.js';
import type { StoredRuntime } from '../volumes/stored/runtime.js';

/** How long a snapshot command waits for the snapshot to complete before reporting it still pending. */
const SNAPSHOT_WAIT_MS = 10 * 60_000;

export interface CommandTargets {
  /** Mode of every served volume, by name. */
  readonly modes: ReadonlyMap<string, string>;
  readonly stored: () => StoredRuntime | undefined;
  readonly cached: () => CachedRuntime | undefined;
  /** Creates and serves a volume of any mode (the daemon's run-time volume path). */
  readonly createVolume: (body: Record<string, unknown>) => Promise<unknown>;
  /** The shared object store, when one is configured. */
  readonly store: BandwidthLimitedObjectStore | undefined;
  readonly logger: Logger;
}

export class DaemonCommandHandler implements GatewayCommandHandler {
  constructor(private readonly t: CommandTargets) {}

  async createVolume(spec: CreateVolumeSpec): Promise<unknown> {
    this.t.logger.info('creating volume (control command)', { volume: spec.name, mode: spec.mode, size: spec.size, fromSnapshot: spec.fromSnapshot });
    return this.t.createVolume({ name: spec.name, mode: spec.mode, size: spec.size, ...(spec.fromSnapshot ? { fromSnapshot: spec.fromSnapshot } : {}) });
  }

  async snapshot(request: SnapshotRequest): Promise<unknown> {
    const modes = request.volumes.map((v) => {
      const m = this.t.modes.get(v);
      if (m === undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `no volume named ${JSON.stringify(v)} on this gateway`);
      return m;
    });
    if (modes.every((m) => m === 'stored')) {
      const stored = this.t.stored()!;
      // One crash-consistent, all-or-nothing group across the volumes.
      return stored.createSnapshot(request.volumes, { origin: 'control' });
    }
    if (modes.every((m) => m === 'cached')) {
      const cached = this.t.cached()!;
      const snapshots = [];
      // A cached snapshot is pinned once the log has drained to its marker; report it complete.
      for (const v of request.volumes) snapshots.push(await cached.snapshot(v, { description: 'control', waitMs: SNAPSHOT_WAIT_MS }));
      return { snapshots };
    }
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT,
      `snapshots are for stored or cached volumes, one mode per request (got ${request.volumes.map((v, i) => `${v}: ${modes[i]}`).join(', ')})`);
  }

  async setBandwidthLimit(limits: BandwidthLimits): Promise<unknown> {
    if (!this.t.store) throw new BlockgateError(ErrorCodes.CONFIG, 'this gateway has no object store configured (store: section)');
    this.t.store.setLimits({ upBytesPerSec: limits.upload ?? 0, downBytesPerSec: limits.download ?? 0 });
    this.t.logger.info('bandwidth limits set (control command)', { upload: limits.upload, download: limits.download });
    const now = this.t.store.limits;
    return { upload: now.upBytesPerSec || null, download: now.downBytesPerSec || null };
  }

  async setSnapshotSchedule(schedule: SnapshotSchedule): Promise<unknown> {
    const mode = this.t.modes.get(schedule.volume);
    if (mode !== 'stored') {
      throw new BlockgateError(mode === undefined ? ErrorCodes.INVALID_ARGUMENT : ErrorCodes.NOT_SUPPORTED,
        mode === undefined ? `no volume named ${JSON.stringify(schedule.volume)} on this gateway` : `snapshot schedules are for stored volumes (${schedule.volume} is ${mode})`);
    }
    this.t.logger.info('snapshot schedule set (control command)', { ...schedule });
    return this.t.stored()!.setSchedule(
      schedule.volume, schedule.intervalSeconds === null ? null : schedule.intervalSeconds * 1000, schedule.retain ?? undefined,
    );
  }
}
