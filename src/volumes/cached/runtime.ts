// CachedRuntime: everything the daemon needs for `mode: cached` volumes: the
// object store (top-level `store:`), a SnapshotStore, an UploadPool and one
// VolumeUploader per volume (the stored mode's uploader, driven through the
// volume's UploadView), user snapshots (pinned roots), run-time volume
// creation (persisted under dataDir so they survive restarts) and status
// details. Its operations are typed methods; the daemon maps them to admin
// routes, control commands and metrics (src/daemon/), and this file imports
// nothing from there.
// States: created -> running (start(): uploaders on) -> stopping
// (stopBackground(): uploaders stopped, their sessions aborted; the logs keep
// what was not committed) -> closed (close()).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { withUploadStatus, type UploadStatusFields } from '../../uploader/upload-lag.js';
import { BlockgateError, ErrorCodes, errorMessage } from '../../errors.js';
import type { Logger } from '../../log.js';
import { defaultHolder, type LeaseHolder } from '../../fencing/lease.js';
import type { ObjectStore } from '../../object-store/object-store.js';
import { SnapshotStore, type SnapshotRoot } from '../../snapshots/index.js';
import { UploadPool } from '../../uploader/pool.js';
import { VolumeUploader, type MarkerPayload, type UploaderHooks } from '../../uploader/uploader.js';
import { readGroup } from '../stored/coordinator.js';
import { CachedVolume, type CachedVolumeDetails } from './cached-volume.js';
import { cachedVolumeFromJson, cachedVolumeToJson, type CachedVolumeConfig } from './config.js';
import { writeFileAtomic } from '../../util/atomic-file.js';

export type CachedVolumeStatus = CachedVolumeDetails & UploadStatusFields;

export interface CachedSnapshotView {
  id: string;
  volume: string;
  createdAt: string;
  description: string | null;
  state: 'complete' | 'pending';
  markerSeq: number;
}

export interface CachedRuntimeOptions {
  /** Daemon state directory: gateway id, run-time volume configs (volumes/<name>.json). */
  dataDir: string;
  uploadWorkers: number;
  /** Registers a volume opened at run time with the NBD server and status. */
  addExport?: (cfg: CachedVolumeConfig, vol: CachedVolume) => void;
  /** Is this export name taken (any mode)? */
  hasExport?: (name: string) => boolean;
  /** Test knob: lease renewal period. */
  leaseRenewMs?: number;
}

/**
 * A run-time cached volume as requested (admin API body, control command):
 * the volume's JSON config (validated by cachedVolumeFromJson) plus
 * `cacheSize`, `logSize` and `cloneOf`.
 */
export type CachedVolumeRequest = Record<string, unknown> & {
  name?: unknown; cacheSize?: unknown; logSize?: unknown; cloneOf?: unknown; fromSnapshot?: unknown;
};

export interface CreatedCachedVolume {
  name: string;
  size: number;
  blockSize: number;
  /** The snapshot the volume was created from. */
  fromSnapshot: string | null;
  /** The volume's live root in the store. */
  root: string | null;
}

interface Waiter { token: string; resolve: (root: SnapshotRoot) => void }

/** Uploader hooks of one cached volume: roots are described as ours; only our superseded auto roots are deleted. */
class CachedHooks implements UploaderHooks {
  readonly waiters: Waiter[] = [];
  lastFailure: string | null = null;
  constructor(private readonly volume: string) {}

  describe(_family: string, payload: MarkerPayload): Record<string, unknown> {
    const user = payload.kind === 'user';
    return {
      blockgate: 'cached', volume: this.volume, kind: user ? 'user' : 'auto',
      ...(user && typeof payload.description === 'string' ? { description: payload.description } : {}),
    };
  }

  async committed(_family: string, payload: MarkerPayload, root: SnapshotRoot): Promise<void> {
    if (payload.kind !== 'user') return;
    const token = payload.token;
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.token === token) { this.waiters.splice(i, 1); w.resolve(root); }
    }
  }

  failed(_family: string, _payload: MarkerPayload, err: unknown): void {
    this.lastFailure = errorMessage(err); // the uploader retries the same marker; it stays a user snapshot
  }

  disposable(root: SnapshotRoot): boolean {
    const d = describeOf(root);
    return d.blockgate === 'cached' && d.volume === this.volume && d.kind === 'auto';
  }
}

function describeOf(root: SnapshotRoot): { blockgate?: string; volume?: string; kind?: string; description?: string } {
  try { return JSON.parse(root.description ?? '{}') as ReturnType<typeof describeOf>; } catch { return {}; }
}

export class CachedRuntime {
  readonly volumes = new Map<string, CachedVolume>();
  readonly uploaders = new Map<string, VolumeUploader>();
  private readonly hooks = new Map<string, CachedHooks>();
  readonly configs = new Map<string, CachedVolumeConfig>();
  readonly pool: UploadPool;
  private holderCache: LeaseHolder | undefined;
  private started = false;
  private creating = new Set<string>();

  private constructor(readonly store: ObjectStore, readonly snaps: SnapshotStore, private readonly o: CachedRuntimeOptions, private readonly logger: Logger) {
    this.pool = new UploadPool({ workers: o.uploadWorkers });
  }

  /** The lease holder: this gateway's id from dataDir (created on first use, so daemons without cached volumes never touch dataDir). */
  get holder(): LeaseHolder {
    return (this.holderCache ??= defaultHolder(gatewayId(this.o.dataDir)));
  }

  static create(store: ObjectStore, logger: Logger, o: CachedRuntimeOptions): CachedRuntime {
    return new CachedRuntime(store, new SnapshotStore(store, { logger }), o, logger);
  }

  setExportHooks(addExport: CachedRuntimeOptions['addExport'], hasExport: CachedRuntimeOptions['hasExport']): void {
    this.o.addExport = addExport;
    this.o.hasExport = hasExport;
  }

  async openVolume(v: CachedVolumeConfig, logger: Logger, options: { mustExist?: boolean } = {}): Promise<CachedVolume> {
    const fromSnapshot = v.fromSnapshot !== undefined ? await this.resolveSnapshot(v.name, v.fromSnapshot) : undefined;
    const vol = await CachedVolume.open({
      name: v.name, logDir: v.writeLog.dir, logCapacityBytes: v.writeLog.size, cacheDir: v.cache.dir, cacheCapacityBytes: v.cache.size,
      store: this.store, snaps: this.snaps, holder: this.holder, leaseTtlMs: v.lease.ttlMs, takeover: v.lease.takeover,
      readAheadBlocks: v.readAheadBlocks, logger,
      ...(v.size !== undefined ? { size: v.size } : {}),
      ...(v.blockSize !== undefined ? { blockSize: v.blockSize } : {}),
      ...(fromSnapshot !== undefined ? { fromSnapshot } : {}),
      ...(options.mustExist ? { mustExist: true } : {}),
      ...(this.o.leaseRenewMs !== undefined ? { leaseRenewMs: this.o.leaseRenewMs } : {}),
    });
    const hooks = new CachedHooks(v.name);
    const up = new VolumeUploader(vol.view, this.pool, {
      logger: logger.child({ component: 'uploader' }), hooks, minIntervalMs: v.uploadIntervalMs,
    });
    vol.lease.onFenced(() => { void up.stop(); });
    this.volumes.set(v.name, vol);
    this.uploaders.set(v.name, up);
    this.hooks.set(v.name, hooks);
    this.configs.set(v.name, v);
    if (this.started) this.startVolume(v.name);
    return vol;
  }

  /** snap-... as is; a vsnap-... group id to its member for `volume` (or its only member). */
  private async resolveSnapshot(volume: string, id: string): Promise<string> {
    if (!id.startsWith('vsnap-')) return id;
    const rec = await readGroup(this.store, id);
    const m = rec.members.find((x) => x.volume === volume) ?? (rec.members.length === 1 ? rec.members[0] : undefined);
    if (!m?.snapshot) {
      throw new BlockgateError(ErrorCodes.CONFIG, `snapshot ${id} has several members (${rec.members.map((x) => x.volume).join(', ')}); name one of their snap-... ids`);
    }
    return m.snapshot;
  }

  async start(): Promise<void> {
    this.started = true;
    for (const name of this.volumes.keys()) this.startVolume(name);
  }

  private startVolume(name: string): void {
    this.uploaders.get(name)?.start();
    void this.removeOrphanRoots(name);
  }

  /** Auto roots of this volume left by a crash between a root put and the record update (never the live root). */
  private async removeOrphanRoots(name: string): Promise<void> {
    const vol = this.volumes.get(name);
    if (!vol) return;
    try {
      for (const root of await this.snaps.list(vol.record.family)) {
        const d = describeOf(root);
        if (d.blockgate !== 'cached' || d.volume !== name || d.kind !== 'auto') continue;
        if (root.id === vol.liveRoot?.id || root.id >= (vol.liveRoot?.id ?? '')) continue; // live, or possibly being committed right now
        await this.snaps.delete(root.id).catch(() => undefined);
        this.logger.info('removed an orphan auto root', { volume: name, snapshot: root.id });
      }
    } catch (err) {
      this.logger.debug('orphan root scan failed', { volume: name, err: errorMessage(err) });
    }
  }

  // ------------------------------------------------------------ snapshots

  /** Cuts a snapshot marker and (up to waitMs) waits for its root: the volume as of the marker, pinned. */
  async snapshot(name: string, options: { description?: string; waitMs?: number } = {}): Promise<CachedSnapshotView> {
    const vol = this.volume(name);
    const hooks = this.hooks.get(name)!;
    if (vol.fenced) throw vol.lease.fencedError!;
    const token = randomBytes(8).toString('hex');
    let resolve!: (r: SnapshotRoot) => void;
    const done = new Promise<SnapshotRoot>((r) => (resolve = r));
    hooks.waiters.push({ token, resolve });
    const markerSeq = await vol.appendMarker({ kind: 'user', token, ...(options.description ? { description: options.description } : {}) });
    this.uploaders.get(name)?.kick();
    const wait = options.waitMs ?? 0;
    let timer: NodeJS.Timeout | undefined;
    const root = await Promise.race([done, new Promise<undefined>((r) => { timer = setTimeout(() => r(undefined), wait); })]);
    clearTimeout(timer);
    if (!root) {
      return { id: `pending:${markerSeq}`, volume: name, createdAt: new Date().toISOString(), description: options.description ?? null, state: 'pending', markerSeq };
    }
    return { id: root.id, volume: name, createdAt: root.createdAt, description: options.description ?? null, state: 'complete', markerSeq };
  }

  /** User snapshots of a cached volume (roots pinned by snapshot()), oldest first. */
  async listSnapshots(name: string): Promise<CachedSnapshotView[]> {
    const vol = this.volume(name);
    return (await this.snaps.list(vol.record.family))
      .map((r) => ({ r, d: describeOf(r) }))
      .filter(({ d }) => d.blockgate === 'cached' && d.volume === name && d.kind === 'user')
      .map(({ r, d }) => ({ id: r.id, volume: name, createdAt: r.createdAt, description: d.description ?? null, state: 'complete' as const, markerSeq: 0 }));
  }

  private volume(name: string): CachedVolume {
    const v = this.volumes.get(name);
    if (!v) throw new BlockgateError(ErrorCodes.OBJECT_NOT_FOUND, `no cached volume named ${JSON.stringify(name)} on this gateway`);
    return v;
  }

  // ------------------------------------------------------------ run-time volumes

  /**
   * Creates (or re-opens) a cached volume at run time and serves it at once.
   * body: the volume's config as JSON; `cache`/`writeLog` default to
   * dataDir/volumes/<name>/{cache,log} with `cacheSize`/`logSize` (1 GiB);
   * `cloneOf: VOLUME` = from that volume's latest snapshot (a fresh one when
   * VOLUME is a cached volume on this gateway).
   */
  async createVolume(body: CachedVolumeRequest): Promise<CreatedCachedVolume> {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'body must be a JSON object describing the volume');
    const b = { ...(body as Record<string, unknown>) };
    const name = typeof b.name === 'string' ? b.name : '';
    if (this.creating.has(name) || this.volumes.has(name) || this.o.hasExport?.(name)) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `a volume named ${JSON.stringify(name)} is already served by this gateway`);
    }
    this.creating.add(name);
    try {
      const base = join(this.o.dataDir, 'volumes', name || '_');
      const cacheSize = b.cacheSize ?? '1GiB';
      const logSize = b.logSize ?? '1GiB';
      delete b.cacheSize;
      delete b.logSize;
      b.cache ??= { dir: join(base, 'cache'), size: cacheSize };
      b.writeLog ??= { dir: join(base, 'log'), size: logSize };
      if (typeof b.cloneOf === 'string') {
        if (b.fromSnapshot !== undefined) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'give fromSnapshot or cloneOf, not both');
        b.fromSnapshot = await this.latestSnapshotOf(b.cloneOf);
      }
      delete b.cloneOf;
      const cfg = cachedVolumeFromJson(b, this.o.dataDir);
      const vol = await this.openVolume(cfg, this.logger.child({ volume: cfg.name }));
      try {
        const dir = join(this.o.dataDir, 'volumes');
        mkdirSync(dir, { recursive: true });
        writeFileAtomic(join(dir, `${cfg.name}.json`), Buffer.from(JSON.stringify(cachedVolumeToJson(cfg), null, 2) + '\n'));
        this.o.addExport?.(cfg, vol);
      } catch (err) {
        await this.closeVolume(cfg.name);
        throw err;
      }
      this.logger.info('volume created at run time', { volume: cfg.name, size: vol.size, fromSnapshot: cfg.fromSnapshot ?? null });
      return { name: cfg.name, size: vol.size, blockSize: vol.blockSize, fromSnapshot: vol.record.origin, root: vol.liveRoot?.id ?? null };
    } finally {
      this.creating.delete(name);
    }
  }

  private async latestSnapshotOf(volume: string): Promise<string> {
    if (this.volumes.has(volume)) {
      const s = await this.snapshot(volume, { description: 'clone source', waitMs: 10 * 60_000 });
      if (s.state !== 'complete') throw new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, `volume ${volume}: its snapshot did not complete within 10 minutes (store slow or unreachable?)`, { retryable: true });
      return s.id;
    }
    const roots = await this.snaps.list(volume);
    const latest = roots.at(-1);
    if (!latest) throw new BlockgateError(ErrorCodes.SNAPSHOT_NOT_FOUND, `volume ${volume} has no snapshot in the store to clone`);
    return latest.id;
  }

  private async closeVolume(name: string): Promise<void> {
    await this.uploaders.get(name)?.stop();
    await this.volumes.get(name)?.close();
    this.uploaders.delete(name);
    this.volumes.delete(name);
    this.hooks.delete(name);
    this.configs.delete(name);
  }

  // ------------------------------------------------------------ status

  /** Names of the open cached volumes. */
  names(): string[] {
    return [...this.volumes.keys()];
  }

  /** Every volume's status details, by name. */
  statuses(): Array<[name: string, status: CachedVolumeStatus]> {
    return this.names().flatMap((n): Array<[string, CachedVolumeStatus]> => { const d = this.details(n); return d ? [[n, d]] : []; });
  }

  details(name: string): CachedVolumeStatus | undefined {
    const vol = this.volumes.get(name);
    const up = this.uploaders.get(name);
    if (!vol || !up) return undefined;
    return withUploadStatus(vol.details(), vol, up);
  }

  async stopBackground(): Promise<void> {
    await Promise.all([...this.uploaders.values()].map((u) => u.stop()));
    this.pool.close();
  }

  /** The store is the caller's (the daemon shares it between modes) and stays open. */
  async close(): Promise<void> {
    /* nothing the runtime owns beyond its volumes, closed by stopBackground/closeVolume */
  }
}

/** Run-time volumes persisted by earlier runs (dataDir/volumes/*.json), oldest name first. */
export function persistedCachedVolumes(dataDir: string): CachedVolumeConfig[] {
  const dir = join(dataDir, 'volumes');
  if (!existsSync(dir)) return [];
  const out: CachedVolumeConfig[] = [];
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.json')).sort()) {
    const path = join(dir, f);
    try {
      out.push(cachedVolumeFromJson(JSON.parse(readFileSync(path, 'utf8')), dataDir, path));
    } catch (err) {
      throw new BlockgateError(ErrorCodes.CONFIG, `run-time volume file ${path} is invalid: ${errorMessage(err)}`);
    }
  }
  return out;
}

/** This gateway's stable id (the lease holder id), kept in dataDir/gateway-id. */
export function gatewayId(dataDir: string): string {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, 'gateway-id');
  try {
    const id = readFileSync(path, 'utf8').trim();
    if (/^gw-[0-9a-f]{16}$/.test(id)) return id;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new BlockgateError(ErrorCodes.IO, `cannot read ${path}: ${errorMessage(err)}`);
  }
  const id = `gw-${randomBytes(8).toString('hex')}`;
  writeFileAtomic(path, Buffer.from(id + '\n'));
  return id;
}

