// VolumeUploader: shadows one stored volume into the object store.
//
// Cycle: take the oldest unreleased marker M (cutting an internal "auto"
// marker first when the log holds writes and no marker, at most every
// `minIntervalMs`); upload every block changed up to M, as of M
// (StoredVolume.blockAsOf), through the shared UploadPool, as a snapshot
// whose parent is the volume's current root; complete it (root put last);
// then StoredVolume.commitRoot (disk fdatasync, state file, log release up to
// M). So the log is trimmed only after the root covering it is durable, and
// the store always holds a consistent image as of some marker.
//
// States: idle (nothing to upload) -> uploading -> idle | retrying (an error:
// exponential backoff 1 s .. 30 s, then the same marker again; writes keep
// succeeding into the log meanwhile, until it is full) -> stopped.
// Hooks let the snapshot coordinator name user snapshots and learn when their
// roots are durable (or failed), and decide which superseded roots to keep.
import { sha256Async } from '../util/sha256.js';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { aggregateOf, type SnapshotRoot } from '../snapshots/index.js';
import type { WriteLog } from '../write-log/write-log.js';
import type { SnapshotStore } from '../snapshots/index.js';
import type { UploadPool } from './pool.js';

export interface MarkerPayload {
  kind?: 'auto' | 'user';
  group?: string;
  [k: string]: unknown;
}

/**
 * What the uploader needs from a volume: StoredVolume implements it, and a
 * cached volume's UploadView (src/volumes/cached) does too. `name` is the
 * snapshot family the roots are written under.
 */
export interface UploadableVolume {
  readonly name: string;
  readonly size: number;
  readonly blockSize: number;
  readonly snaps: SnapshotStore;
  readonly log: WriteLog;
  readonly root: { readonly id: string; readonly markerSeq: number; readonly createdAt: string } | null;
  onActivity(listener: () => void): void;
  appendMarker(payload: Record<string, unknown>): Promise<number>;
  blockAsOf(index: number, markerSeq: number, parent: SnapshotRoot | null, covered: boolean): Promise<Buffer>;
  commitRoot(ref: { id: string; markerSeq: number; createdAt: string }): Promise<void>;
}

export interface UploaderHooks {
  /** Description stored in the root for this marker (JSON). */
  describe(volume: string, payload: MarkerPayload): Record<string, unknown>;
  /** The root for a marker is durable and the log released. */
  committed(volume: string, payload: MarkerPayload, root: SnapshotRoot): Promise<void>;
  /** An upload attempt for this marker failed (it will be retried as plain shadowing). */
  failed(volume: string, payload: MarkerPayload, err: unknown): void;
  /** May this superseded root be deleted? */
  disposable(root: SnapshotRoot): boolean;
}

export interface UploaderOptions {
  minIntervalMs?: number;
  maxBackoffMs?: number;
  logger: Logger;
  hooks: UploaderHooks;
}

export interface UploaderStatus {
  state: 'idle' | 'uploading' | 'retrying' | 'stopped';
  lastError: string | null;
  lastErrorAt: string | null;
  lastSnapshot: { id: string; createdAt: string; changedBlocks: number; markerSeq: number } | null;
  uploadedBytes: number;
  uploadedBlocks: number;
  snapshots: number;
  /** Plaintext bytes/s put over the last ~10 s. */
  throughputBytesPerSec: number;
  currentJob: { markerSeq: number; blocks: number; done: number } | null;
}

export class VolumeUploader {
  private stopped = false;
  private loopDone: Promise<void> | undefined;
  private wakeUp: (() => void) | undefined;
  private pending = false;
  private idleSleep = false;
  private lastCut = 0;
  private readonly st: UploaderStatus = {
    state: 'idle', lastError: null, lastErrorAt: null, lastSnapshot: null, uploadedBytes: 0, uploadedBlocks: 0, snapshots: 0,
    throughputBytesPerSec: 0, currentJob: null,
  };
  private readonly rate: Array<[number, number]> = [];
  private abortSession: (() => Promise<void>) | undefined;
  private readonly idleWaiters: Array<() => void> = [];

  constructor(readonly volume: UploadableVolume, private readonly pool: UploadPool, private readonly o: UploaderOptions) {
    volume.onActivity(() => this.kick());
  }

  start(): void {
    this.loopDone = this.loop();
  }

  /** Activity on the volume: wakes the loop only when it sleeps with nothing to upload (cheap on the write path). */
  kick(): void {
    this.pending = true;
    if (this.idleSleep) this.wakeUp?.();
  }

  status(): UploaderStatus {
    const now = Date.now();
    while (this.rate.length > 0 && now - this.rate[0]![0] > 10_000) this.rate.shift();
    const bytes = this.rate.reduce((a, r) => a + r[1], 0);
    const span = this.rate.length > 0 ? Math.max(1000, now - this.rate[0]![0]) : 1000;
    return { ...this.st, throughputBytesPerSec: Math.round((bytes * 1000) / span) };
  }

  /** Resolves when the log holds nothing unreleased (every write is in the store). */
  async drained(): Promise<void> {
    const log = this.volume.log;
    while (log.newestSeq > log.releasedSeq) {
      this.pending = true;
      this.wakeUp?.();
      await new Promise<void>((r) => this.idleWaiters.push(r));
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void { clearTimeout(t); resolve(); }
      this.wakeUp = done;
    }).finally(() => { this.wakeUp = undefined; });
  }

  private async loop(): Promise<void> {
    let backoff = 1000;
    const max = this.o.maxBackoffMs ?? 30_000;
    while (!this.stopped) {
      this.pending = false;
      let didWork = false;
      try {
        didWork = await this.cycle();
        backoff = 1000;
        if (this.st.state !== 'stopped') this.st.state = 'idle';
      } catch (err) {
        if (this.stopped) break;
        this.st.state = 'retrying';
        this.st.lastError = errorMessage(err);
        this.st.lastErrorAt = new Date().toISOString();
        this.o.logger.warn('upload failed; retrying', { err: this.st.lastError, backoffMs: backoff });
        await this.sleep(backoff);
        backoff = Math.min(max, backoff * 2);
        continue;
      }
      const log = this.volume.log;
      if (log.newestSeq <= log.releasedSeq) for (const w of this.idleWaiters.splice(0)) w();
      if (didWork || this.stopped) continue;
      // Nothing now: wait for activity (or the interval, to cut the next auto marker).
      const wait = log.newestSeq > log.releasedSeq ? Math.max(10, (this.o.minIntervalMs ?? 1000) - (Date.now() - this.lastCut)) : 60_000;
      if (!this.pending || log.newestSeq > log.releasedSeq) {
        this.idleSleep = log.newestSeq <= log.releasedSeq;
        await this.sleep(wait);
        this.idleSleep = false;
      }
    }
    this.st.state = 'stopped';
  }

  /** One marker uploaded (true), or nothing to do yet (false). */
  private async cycle(): Promise<boolean> {
    const vol = this.volume;
    const log = vol.log;
    let markers = log.markers();
    if (markers.length === 0) {
      if (log.newestSeq <= log.releasedSeq) return false;
      if (Date.now() - this.lastCut < (this.o.minIntervalMs ?? 1000)) return false;
      this.lastCut = Date.now();
      await vol.appendMarker({ kind: 'auto' });
      markers = log.markers();
      if (markers.length === 0) return false;
    }
    const m = markers[0]!;
    const payload = (m.payload ?? {}) as MarkerPayload;
    const current = vol.root;
    if (current && current.markerSeq >= m.seq) {
      await vol.commitRoot(current); // a root for it is durable already (crash before release)
      return true;
    }
    try {
      const root = await this.upload(m.seq, payload);
      this.st.state = 'idle';
      await this.o.hooks.committed(vol.name, payload, root).catch((err) => this.o.logger.warn('snapshot hook failed', { err: errorMessage(err) }));
      return true;
    } catch (err) {
      // Every user snapshot from this marker on fails with it: one queued behind a failing (auto)
      // upload would otherwise wait, pending, for as long as the store keeps failing.
      for (const mk of log.markers()) {
        const p = (mk.payload ?? {}) as MarkerPayload;
        if (p.kind === 'user') this.o.hooks.failed(vol.name, p, err);
      }
      throw err;
    }
  }

  private async upload(markerSeq: number, payload: MarkerPayload): Promise<SnapshotRoot> {
    const vol = this.volume;
    const snaps = vol.snaps;
    this.st.state = 'uploading';
    const parentRef = vol.root;
    const parent = parentRef ? await snaps.getRoot(parentRef.id) : null;
    const changed = vol.log.changedBlocks(vol.blockSize, { asOf: markerSeq });
    const covered = new Map(changed.map((b) => [b.index, b.covered]));
    const blocks = changed.map((b) => b.index);
    const session = await snaps.start({
      volume: vol.name, size: vol.size, blockSize: vol.blockSize, ...(parent ? { parent: parent.id } : {}),
      description: JSON.stringify(this.o.hooks.describe(vol.name, payload)),
    });
    this.abortSession = () => session.abort();
    const digests = new Map<number, Buffer>();
    const job = { markerSeq, blocks: blocks.length, done: 0 };
    this.st.currentJob = job;
    try {
      await this.pool.run(vol.name, blocks, async (index) => {
        if (this.stopped) throw new Error('uploader stopped');
        const data = await vol.blockAsOf(index, markerSeq, parent, covered.get(index) ?? false);
        const digest = await sha256Async(data); // on the thread pool: the event loop keeps serving NBD
        const before = session.counters.uploadedBytes;
        await session.putBlockWithDigest(index, data, digest);
        digests.set(index, digest);
        const put = session.counters.uploadedBytes - before;
        this.st.uploadedBytes += Math.max(0, put);
        this.rate.push([Date.now(), Math.max(0, put)]);
        this.st.uploadedBlocks++;
        job.done++;
      });
      const root = await session.complete(blocks.length, aggregateOf(blocks.map((i) => digests.get(i)!)));
      await vol.commitRoot({ id: root.id, markerSeq, createdAt: root.createdAt });
      this.st.snapshots++;
      this.st.lastSnapshot = { id: root.id, createdAt: root.createdAt, changedBlocks: blocks.length, markerSeq };
      this.o.logger.debug('volume shadowed', { snapshot: root.id, markerSeq, changedBlocks: blocks.length, kind: payload.kind ?? 'auto' });
      if (parent && this.o.hooks.disposable(parent)) {
        await snaps.delete(parent.id).catch((err) => this.o.logger.debug('could not delete superseded root', { snapshot: parent.id, err: errorMessage(err) }));
      }
      return root;
    } catch (err) {
      await session.abort().catch(() => undefined);
      throw err;
    } finally {
      this.abortSession = undefined;
      this.st.currentJob = null;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeUp?.();
    await this.loopDone?.catch(() => undefined);
    await this.abortSession?.().catch(() => undefined);
    this.st.state = 'stopped';
    for (const w of this.idleWaiters.splice(0)) w();
  }
}
