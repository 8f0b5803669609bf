// Garbage collection: mark from live roots, sweep unreferenced block and shard
// objects older than a cutoff. Phases: announce → measure server time → read
// sessions → mark → sweep → close. Safe while uploads run (see session.ts):
//   - cutoff = min(serverNow − grace, start of the oldest active session);
//     serverNow is the store's own clock (HEAD of our run record), measured
//     before sessions are listed, so anything written after that is newer
//     than the cutoff and never swept, whatever the client clocks say;
//   - roots marked: snapshots/*, trash/* younger than the grace period, the
//     parent (live or trashed) and pending root of every active session;
//   - if any live root's shard cannot be read, nothing is deleted;
//   - the run is announced in gc/runs/<id>.json (heartbeat while it runs,
//     endedAt when done) so a completing upload can wait for it and re-check
//     the old objects it reused.
// Memory: one Set entry per referenced block hash.

import { hostname } from 'node:os';
import { ErrorCodes, isBlockgateError } from '../errors.js';
import type { ObjectInfo } from '../object-store/object-store.js';
import { mapBounded } from './bounded.js';
import { decodeRoot, hashOfKey, keys, newSnapshotId, prefixes, type SnapshotRoot } from './format.js';
import type { GcRunRecord } from './session.js';
import type { SnapshotStore } from './snapshot-store.js';

export interface GcOptions {
  /** Objects younger than this are never swept (default 1 h). */
  graceMs?: number;
  dryRun?: boolean;
  /** Finished gc run records older than this are removed (default 1 day). */
  runRecordTtlMs?: number;
  onProgress?: (p: { phase: string; done: number; total?: number }) => void;
}

export interface GcResult {
  dryRun: boolean;
  cutoff: string;
  liveSnapshots: number;
  pinnedSnapshots: number;
  activeSessions: number;
  markedShards: number;
  markedBlocks: number;
  sweptBlocks: number;
  sweptBlockBytes: number;
  sweptShards: number;
  sweptShardBytes: number;
  keptYoungObjects: number;
  expiredTrash: number;
  staleSessions: number;
}

interface SessionInfo {
  id: string;
  marker?: ObjectInfo;
  alive?: ObjectInfo;
  pending?: ObjectInfo;
}

export async function collectGarbage(snaps: SnapshotStore, options: GcOptions = {}): Promise<GcResult> {
  const store = snaps.store;
  const graceMs = options.graceMs ?? 3600_000;
  const dryRun = options.dryRun ?? false;
  const staleMs = snaps.options.staleMs;
  const progress = options.onProgress ?? (() => {});
  const runId = `gc-${newSnapshotId().slice(5)}`;
  const record: GcRunRecord = { id: runId, startedAt: new Date().toISOString(), pid: process.pid };
  const writeRecord = async (): Promise<void> => { await store.put(keys.gcRun(runId), Buffer.from(JSON.stringify({ ...record, host: hostname() }))); };

  // 1. Announce, and take the store's clock.
  await writeRecord();
  const serverNow = (await store.head(keys.gcRun(runId))).lastModified.getTime();
  const timer = setInterval(() => { void writeRecord().catch(() => {}); }, Math.max(1000, Math.floor(staleMs / 4)));
  timer.unref();
  try {
    // 2. Sessions.
    const sessions = new Map<string, SessionInfo>();
    for await (const info of store.list(prefixes.sessions)) {
      const m = /^sessions\/(snap-[0-9a-f]+)\.(json|alive|pending\.json)$/.exec(info.key);
      if (!m) continue;
      const s = sessions.get(m[1]!) ?? { id: m[1]! };
      if (m[2] === 'json') s.marker = info; else if (m[2] === 'alive') s.alive = info; else s.pending = info;
      sessions.set(s.id, s);
    }
    let cutoff = serverNow - graceMs;
    const active: SessionInfo[] = [];
    const stale: SessionInfo[] = [];
    for (const s of sessions.values()) {
      const beat = Math.max(s.alive?.lastModified.getTime() ?? 0, s.marker?.lastModified.getTime() ?? 0, s.pending?.lastModified.getTime() ?? 0);
      if (beat >= serverNow - staleMs) {
        active.push(s);
        const start = s.marker?.lastModified.getTime() ?? beat;
        cutoff = Math.min(cutoff, start);
      } else {
        stale.push(s);
      }
    }

    // 3. Roots to mark from.
    const roots = new Map<string, SnapshotRoot>();
    let liveSnapshots = 0;
    for (const id of await snaps.listIds()) {
      try { roots.set(id, await snaps.getRoot(id)); liveSnapshots++; } catch (err) {
        if (!isBlockgateError(err, ErrorCodes.SNAPSHOT_NOT_FOUND)) throw err;
        const trashed = await snaps.getTrashedRoot(id); // deleted between list and get
        if (trashed) roots.set(id, trashed);
      }
    }
    const pinnedParents = new Set<string>();
    for (const s of active) {
      if (s.marker) {
        try {
          const m = JSON.parse((await store.get(s.marker.key)).body.toString('utf8')) as { parent?: string | null };
          if (m.parent) pinnedParents.add(m.parent);
        } catch (err) {
          if (!isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw err;
        }
      }
      if (s.pending) {
        try {
          const r = decodeRoot((await store.get(s.pending.key)).body, s.pending.key);
          roots.set(`pending:${r.id}`, r);
        } catch (err) {
          if (!isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw err;
        }
      }
    }
    const expiredTrash: ObjectInfo[] = [];
    let pinned = 0;
    for await (const info of store.list(prefixes.trash)) {
      const m = /^trash\/(snap-[0-9a-f]+)\.json$/.exec(info.key);
      if (!m) continue;
      const young = info.lastModified.getTime() >= serverNow - graceMs;
      if (young || pinnedParents.has(m[1]!)) {
        const r = await snaps.getTrashedRoot(m[1]!);
        if (r) { roots.set(`trash:${r.id}`, r); pinned++; }
      } else if (!roots.has(m[1]!)) {
        expiredTrash.push(info);
      }
    }

    // 4. Mark.
    const markedShards = new Set<string>();
    for (const r of roots.values()) for (const ref of r.shards) if (ref) markedShards.add(ref.k);
    const markedBlocks = new Set<string>();
    let done = 0;
    await mapBounded([...markedShards], 8, async (hash) => {
      const entries = await snaps.readShard(hash, () => `gc mark: shard ${hash}`);
      for (const h of entries.values()) markedBlocks.add(h);
      progress({ phase: 'mark', done: ++done, total: markedShards.size });
    });

    // 5. Sweep.
    const result: GcResult = {
      dryRun, cutoff: new Date(cutoff).toISOString(), liveSnapshots, pinnedSnapshots: pinned, activeSessions: active.length,
      markedShards: markedShards.size, markedBlocks: markedBlocks.size, sweptBlocks: 0, sweptBlockBytes: 0, sweptShards: 0,
      sweptShardBytes: 0, keptYoungObjects: 0, expiredTrash: expiredTrash.length, staleSessions: 0,
    };
    const sweep = async (prefix: string, marked: Set<string>, kind: 'block' | 'shard'): Promise<void> => {
      const victims: ObjectInfo[] = [];
      const flush = async (): Promise<void> => {
        const batch = victims.splice(0);
        if (!dryRun) await mapBounded(batch, 16, (v) => store.delete(v.key));
        progress({ phase: `sweep ${kind}s`, done: kind === 'block' ? result.sweptBlocks : result.sweptShards });
      };
      for await (const info of store.list(prefix)) {
        const hash = hashOfKey(info.key);
        if (!hash || marked.has(hash)) continue;
        if (info.lastModified.getTime() >= cutoff) { result.keptYoungObjects++; continue; }
        victims.push(info);
        if (kind === 'block') { result.sweptBlocks++; result.sweptBlockBytes += info.size; } else { result.sweptShards++; result.sweptShardBytes += info.size; }
        if (victims.length >= 256) await flush();
      }
      await flush();
    };
    await sweep(prefixes.blocks, markedBlocks, 'block');
    await sweep(prefixes.shards, markedShards, 'shard');

    // 6. Bookkeeping objects.
    if (!dryRun) {
      for (const t of expiredTrash) await store.delete(t.key);
      for (const s of stale) {
        const newest = Math.max(s.alive?.lastModified.getTime() ?? 0, s.marker?.lastModified.getTime() ?? 0, s.pending?.lastModified.getTime() ?? 0);
        if (newest >= cutoff) continue;
        for (const o of [s.pending, s.alive, s.marker]) if (o) await store.delete(o.key);
        result.staleSessions++;
      }
      const ttl = options.runRecordTtlMs ?? 86_400_000;
      for await (const info of store.list(prefixes.gcRuns)) {
        if (info.key !== keys.gcRun(runId) && info.lastModified.getTime() < serverNow - Math.max(ttl, staleMs * 2)) await store.delete(info.key);
      }
    } else {
      result.staleSessions = stale.length;
    }
    snaps.log.info('gc done', { ...result });
    return result;
  } finally {
    clearInterval(timer);
    record.endedAt = new Date().toISOString();
    await writeRecord().catch((err: unknown) => snaps.log.warn('could not close gc run record', { err }));
  }
}
