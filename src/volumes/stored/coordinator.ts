// SnapshotCoordinator: user-visible snapshots of stored volumes, each a set
// of one or more volumes taken together ("group").
//
// Creating one: a write barrier across the volumes (new writes wait at the
// door; in-flight ones finish) while a marker {kind:'user', group} is
// appended to each volume's log, so the set is crash-consistent (any write
// acknowledged before another write was issued is in the set if that later
// write is). Each volume's uploader turns its marker into a snapshot root
// (exactly the volume as of the marker). When every member root is durable,
// the group record volume-snapshots/<id>.json is put (put-if-absent): that
// record is the commit point, nothing of the set is visible before it.
// If any part fails (marker append, an upload attempt of a member marker,
// the record put), the group fails: member roots already committed are
// deleted (or, when one is a volume's current parent, left to be deleted
// when superseded) and nothing becomes visible.
//
// States of a group: pending -> complete | failed. A pending group is also
// recorded as volume-snapshots/pending/<id>.json; a daemon restart marks any
// pending group it finds failed and cleans it up (the request was lost).
import { randomBytes } from 'node:crypto';
import { BlockgateError, ErrorCodes, errorMessage, isBlockgateError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { ObjectStore } from '../../object-store/object-store.js';
import type { SnapshotRoot, SnapshotStore } from '../../snapshots/index.js';
import type { MarkerPayload, UploaderHooks } from '../../uploader/uploader.js';
import type { StoredVolume } from './stored-volume.js';

export const GROUP_PREFIX = 'volume-snapshots/';
const PENDING_PREFIX = 'volume-snapshots/pending/';
export const GROUP_ID_RE = /^vsnap-[0-9a-f]{12}[0-9a-f]{8}$/;

export interface GroupMember {
  volume: string;
  markerSeq: number;
  /** Snapshot root id once durable. */
  snapshot: string | null;
}

export interface VolumeSnapshotRecord {
  format: 'blockgate-volume-snapshot';
  version: 1;
  id: string;
  createdAt: string;
  description: string | null;
  /** 'manual' or 'schedule'. */
  origin: string;
  members: GroupMember[];
}

export interface GroupView extends VolumeSnapshotRecord {
  state: 'pending' | 'complete' | 'failed';
  error: string | null;
  completedAt: string | null;
}

export function newGroupId(now = Date.now()): string {
  return `vsnap-${now.toString(16).padStart(12, '0')}${randomBytes(4).toString('hex')}`;
}

export function groupKey(id: string): string {
  return `${GROUP_PREFIX}${id}.json`;
}

/** Reads a group record from the store (offline tools too). */
export async function readGroup(store: ObjectStore, id: string): Promise<VolumeSnapshotRecord> {
  if (!GROUP_ID_RE.test(id)) throw new BlockgateError(ErrorCodes.SNAPSHOT_NOT_FOUND, `snapshot ${id} not found`);
  try {
    return JSON.parse((await store.get(groupKey(id))).body.toString('utf8')) as VolumeSnapshotRecord;
  } catch (err) {
    if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw new BlockgateError(ErrorCodes.SNAPSHOT_NOT_FOUND, `snapshot ${id} not found`);
    throw err;
  }
}

export async function listGroups(store: ObjectStore): Promise<VolumeSnapshotRecord[]> {
  const out: VolumeSnapshotRecord[] = [];
  for await (const info of store.list(GROUP_PREFIX)) {
    const m = /^volume-snapshots\/(vsnap-[0-9a-f]+)\.json$/.exec(info.key);
    if (!m) continue;
    try { out.push(await readGroup(store, m[1]!)); } catch (err) {
      if (!isBlockgateError(err, ErrorCodes.SNAPSHOT_NOT_FOUND)) throw err;
    }
  }
  return out.sort((a, b) => a.id.localeCompare(b.id));
}

interface Group extends GroupView {
  waiters: Array<() => void>;
}

export class SnapshotCoordinator implements UploaderHooks {
  private readonly groups = new Map<string, Group>();
  /** Ids of complete groups (visible), loaded at start and kept current. */
  private readonly visible = new Set<string>();

  constructor(
    private readonly store: ObjectStore,
    private readonly snaps: SnapshotStore,
    private readonly volumes: ReadonlyMap<string, StoredVolume>,
    private readonly logger: Logger,
  ) {}

  /** Loads visible groups; fails pending groups left by a previous run. */
  async init(): Promise<void> {
    for (const g of await listGroups(this.store)) this.visible.add(g.id);
    for await (const info of this.store.list(PENDING_PREFIX)) {
      const id = /([^/]+)\.json$/.exec(info.key)?.[1];
      if (!id) continue;
      this.logger.warn('snapshot left pending by a previous run: failing it', { snapshot: id });
      let rec: VolumeSnapshotRecord | undefined;
      try { rec = JSON.parse((await this.store.get(info.key)).body.toString('utf8')) as VolumeSnapshotRecord; } catch { /* damaged */ }
      const g: Group = { ...(rec ?? { format: 'blockgate-volume-snapshot', version: 1, id, createdAt: '', description: null, origin: 'manual', members: [] }), state: 'failed', error: 'the daemon restarted before the snapshot completed', completedAt: null, waiters: [] };
      this.groups.set(id, g);
      await this.cleanup(g, true);
    }
  }

  // ------------------------------------------------------------ create

  async create(volumeNames: readonly string[], options: { description?: string; origin?: string } = {}): Promise<GroupView> {
    if (!Array.isArray(volumeNames) || volumeNames.length === 0) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'volumes: at least one volume is required');
    const unique = [...new Set(volumeNames)];
    const vols = unique.map((n) => {
      const v = this.volumes.get(n);
      if (!v) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `no stored volume named ${JSON.stringify(n)} (snapshots are for volumes with mode: stored)`);
      return v;
    });
    const id = newGroupId();
    const g: Group = {
      format: 'blockgate-volume-snapshot', version: 1, id, createdAt: new Date().toISOString(), description: options.description ?? null,
      origin: options.origin ?? 'manual', members: [], state: 'pending', error: null, completedAt: null, waiters: [],
    };
    this.groups.set(id, g);
    await this.store.put(`${PENDING_PREFIX}${id}.json`, Buffer.from(JSON.stringify(this.record(g))));
    // Barrier: no new write enters any member while the markers go in.
    const resumes = vols.map((v) => v.pauseWrites());
    try {
      const seqs = await Promise.all(vols.map((v) => v.appendMarker({ kind: 'user', group: id })));
      g.members = vols.map((v, i) => ({ volume: v.name, markerSeq: seqs[i]!, snapshot: null }));
    } catch (err) {
      this.fail(g, `appending the snapshot markers failed: ${errorMessage(err)}`);
      throw err;
    } finally {
      for (const r of resumes) r();
    }
    this.logger.info('snapshot started', { snapshot: id, volumes: unique, markers: g.members.map((m) => m.markerSeq) });
    return this.view(g);
  }

  /** Waits until the group is complete or failed (or timeoutMs passes). */
  async wait(id: string, timeoutMs: number): Promise<GroupView> {
    const g = this.groups.get(id);
    if (!g) return this.get(id);
    if (g.state === 'pending') {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        t.unref(); // a wait (up to a day, for scheduled snapshots) never keeps a stopping daemon alive
        g.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return this.view(g);
  }

  async get(id: string): Promise<GroupView> {
    const g = this.groups.get(id);
    if (g) return this.view(g);
    const rec = await readGroup(this.store, id);
    return { ...rec, state: 'complete', error: null, completedAt: null };
  }

  /** Visible snapshots (optionally of one volume) plus this run's pending/failed ones, oldest first. */
  async list(volume?: string): Promise<GroupView[]> {
    const out = new Map<string, GroupView>();
    for (const rec of await listGroups(this.store)) out.set(rec.id, { ...rec, state: 'complete', error: null, completedAt: null });
    for (const g of this.groups.values()) out.set(g.id, this.view(g));
    return [...out.values()]
      .filter((g) => volume === undefined || g.members.some((m) => m.volume === volume))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Deletes a visible snapshot: the record first (invisible at once), then member roots. */
  async delete(id: string): Promise<void> {
    const rec = await readGroup(this.store, id);
    await this.store.delete(groupKey(id));
    this.visible.delete(id);
    this.groups.delete(id);
    for (const m of rec.members) if (m.snapshot) await this.deleteRoot(m.volume, m.snapshot);
  }

  // ------------------------------------------------------------ uploader hooks

  describe(_volume: string, payload: MarkerPayload): Record<string, unknown> {
    const g = payload.group ? this.groups.get(payload.group) : undefined;
    if (payload.kind === 'user' && g && g.state === 'pending') return { blockgate: 'snapshot', group: g.id };
    return { blockgate: 'auto' };
  }

  async committed(volume: string, payload: MarkerPayload, root: SnapshotRoot): Promise<void> {
    if (payload.kind !== 'user' || !payload.group) return;
    const g = this.groups.get(payload.group);
    if (!g) return;
    const member = g.members.find((m) => m.volume === volume);
    if (!member) return;
    member.snapshot = root.id;
    if (g.state === 'failed') {
      await this.deleteRoot(volume, root.id);
      return;
    }
    if (g.members.some((m) => m.snapshot === null)) return;
    try {
      await this.store.put(groupKey(g.id), Buffer.from(JSON.stringify(this.record(g), null, 2)), { ifNoneMatch: '*' });
    } catch (err) {
      this.fail(g, `writing the snapshot record failed: ${errorMessage(err)}`);
      return;
    }
    g.state = 'complete';
    g.completedAt = new Date().toISOString();
    this.visible.add(g.id);
    await this.store.delete(`${PENDING_PREFIX}${g.id}.json`).catch(() => undefined);
    this.logger.info('snapshot complete', { snapshot: g.id, members: g.members });
    for (const w of g.waiters.splice(0)) w();
  }

  failed(volume: string, payload: MarkerPayload, err: unknown): void {
    const g = payload.group ? this.groups.get(payload.group) : undefined;
    if (g && g.state === 'pending') this.fail(g, `uploading volume ${volume} failed: ${errorMessage(err)}`);
  }

  disposable(root: SnapshotRoot): boolean {
    let d: { blockgate?: string; group?: string } = {};
    try { d = JSON.parse(root.description ?? '{}') as typeof d; } catch { /* not ours */ }
    if (d.blockgate === 'auto' || d.blockgate === 'baseline') return true;
    if (d.blockgate === 'snapshot' && d.group) {
      const g = this.groups.get(d.group);
      return !this.visible.has(d.group) && (!g || g.state === 'failed');
    }
    return false; // uploaded by someone else (CLI): never ours to delete
  }

  // ------------------------------------------------------------ internals

  private fail(g: Group, message: string): void {
    if (g.state !== 'pending') return;
    g.state = 'failed';
    g.error = message;
    this.logger.warn('snapshot failed; nothing of it is visible', { snapshot: g.id, err: message });
    for (const w of g.waiters.splice(0)) w();
    void this.cleanup(g, false);
  }

  /** Removes what a failed group left: member roots (not a volume's current parent) and the pending record. */
  private async cleanup(g: Group, findRoots: boolean): Promise<void> {
    try {
      if (findRoots) {
        const vols = new Set(g.members.map((m) => m.volume));
        for (const root of await this.snaps.list()) {
          if (vols.size > 0 && !vols.has(root.volume)) continue;
          let d: { group?: string } = {};
          try { d = JSON.parse(root.description ?? '{}') as typeof d; } catch { continue; }
          if (d.group === g.id) await this.deleteRoot(root.volume, root.id);
        }
      } else {
        for (const m of g.members) if (m.snapshot) await this.deleteRoot(m.volume, m.snapshot);
      }
      await this.store.delete(`${PENDING_PREFIX}${g.id}.json`);
    } catch (err) {
      this.logger.warn('cleaning up a failed snapshot did not finish (gc will)', { snapshot: g.id, err: errorMessage(err) });
    }
  }

  private async deleteRoot(volume: string, id: string): Promise<void> {
    if (this.volumes.get(volume)?.root?.id === id) return; // the volume's parent: deleted when superseded
    try { await this.snaps.delete(id); } catch (err) {
      if (!isBlockgateError(err, ErrorCodes.SNAPSHOT_NOT_FOUND)) throw err;
    }
  }

  private record(g: Group): VolumeSnapshotRecord {
    return { format: g.format, version: g.version, id: g.id, createdAt: g.createdAt, description: g.description, origin: g.origin, members: g.members.map((m) => ({ ...m })) };
  }

  private view(g: Group): GroupView {
    return { ...this.record(g), state: g.state, error: g.error, completedAt: g.completedAt };
  }
}
