// Offline restore of a stored volume's snapshot to a local disk (file or
// block device): full (every block written; a file is recreated sparse) or
// incremental (each target block is read and hashed; only blocks whose
// content differs are fetched and written). SNAPSHOT is a user snapshot
// (vsnap-..., one member or --volume) or a snapshot root (snap-...).
import { BlockgateError, ErrorCodes } from '../errors.js';
import type { ObjectStore } from '../object-store/object-store.js';
import { SnapshotStore, downloadSnapshot, type DownloadResult, type TransferProgress } from '../snapshots/index.js';
import { readGroup } from '../volumes/stored/coordinator.js';

export async function resolveSnapshot(store: ObjectStore, id: string, volume?: string): Promise<string> {
  if (id.startsWith('snap-')) return id;
  if (!id.startsWith('vsnap-')) throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${JSON.stringify(id)} is not a snapshot id (vsnap-... or snap-...)`);
  const rec = await readGroup(store, id);
  const members = volume ? rec.members.filter((m) => m.volume === volume) : rec.members;
  if (members.length !== 1 || !members[0]!.snapshot) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, volume
      ? `snapshot ${id} has no volume ${volume} (volumes: ${rec.members.map((m) => m.volume).join(', ')})`
      : `snapshot ${id} holds ${rec.members.length} volumes (${rec.members.map((m) => m.volume).join(', ')}): choose one with --volume`);
  }
  return members[0]!.snapshot!;
}

export interface RestoreOptions {
  incremental?: boolean;
  volume?: string;
  concurrency?: number;
  onProgress?: (p: TransferProgress) => void;
}

export async function restoreToDisk(store: ObjectStore, snapshot: string, target: string, o: RestoreOptions = {}): Promise<DownloadResult & { snapshot: string }> {
  const snaps = new SnapshotStore(store, { ...(o.concurrency ? { concurrency: o.concurrency } : {}) });
  const id = await resolveSnapshot(store, snapshot, o.volume);
  const r = await downloadSnapshot(snaps, id, target, {
    incremental: o.incremental ?? false,
    ...(o.concurrency ? { concurrency: o.concurrency } : {}),
    ...(o.onProgress ? { onProgress: o.onProgress } : {}),
  });
  return { ...r, snapshot: id };
}
