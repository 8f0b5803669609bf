// Lease: single-writer fencing for one resource (a volume) through one JSON
// object in the object store, changed only by conditional puts.
//
// The lease object carries an epoch, the holder, and the resource's small
// mutable record (for a cached volume: its live root). Every change is a put
// with ifMatch = the ETag this holder last wrote, so the object is a
// compare-and-swap register: whoever takes the lease over (epoch + 1)
// changes the ETag, and from then on every put of the old holder fails with
// PRECONDITION_FAILED. The old holder re-reads, sees a newer epoch or another
// holder, and is fenced for good.
//
// States (per Lease instance): held -> fenced (epoch superseded; terminal) |
// released (clean close; terminal). Renewal failures (store unreachable)
// leave the lease held: only a conditional-put refusal fences.
//
// Acquire rules (docs/cached-volumes.md#fencing):
//   - no object: create it (ifNoneMatch '*') with epoch 1;
//   - released, or held by this holder id (a restart of the same gateway):
//     take it with ifMatch, epoch + 1;
//   - held by another holder: refused with ERR_LEASE_HELD, unless the policy
//     allows taking an expired lease (not renewed for ttlMs by the store's
//     clock: the object's lastModified against a probe object's, so client
//     clocks do not matter) or forces the takeover.
// Invariants: at most one instance can ever commit a change for a given
// epoch (the store's conditional put is the arbiter); every put of this
// instance is serialized on one chain, so it never races itself.
import { hostname } from 'node:os';
import { BlockgateError, ErrorCodes, errorMessage, isBlockgateError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { ObjectStore } from '../object-store/object-store.js';

export interface LeaseHolder {
  /** Stable identity of the gateway (survives restarts). */
  readonly id: string;
  readonly host: string;
  readonly pid: number;
}

export interface LeaseDocument<T> {
  format: 'blockgate-lease';
  version: 1;
  resource: string;
  epoch: number;
  state: 'held' | 'released';
  holder: LeaseHolder;
  ttlMs: number;
  acquiredAt: string;
  renewedAt: string;
  data: T;
}

export type TakeoverPolicy = 'never' | 'expired' | 'force';

export interface LeaseOptions<T> {
  store: ObjectStore;
  key: string;
  /** Human-readable name in messages ("volume db1"). */
  resource: string;
  holder: LeaseHolder;
  /** A lease not renewed for this long may be taken over (policy 'expired'). Default 60 s. */
  ttlMs?: number;
  /** Renewal period (default ttl/4). 0 = no timer (tests call renew()). */
  renewMs?: number;
  /** Default 'expired'. */
  takeover?: TakeoverPolicy;
  /** Record for a resource that has no lease object yet; absent = refuse (ERR_OBJECT_NOT_FOUND). */
  create?: () => Promise<T>;
  logger?: Logger;
}

export interface LeaseStatus {
  epoch: number;
  holder: string;
  state: 'held' | 'fenced' | 'released';
  lastRenewAt: string | null;
  renewFailures: number;
  lastError: string | null;
}

export function defaultHolder(id: string): LeaseHolder {
  return { id, host: hostname(), pid: process.pid };
}

function describeHolder(h: LeaseHolder): string {
  return `${h.host} (pid ${h.pid}, gateway ${h.id})`;
}

export class Lease<T> {
  private state: 'held' | 'fenced' | 'released' = 'held';
  private chain: Promise<unknown> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private readonly listeners: Array<(err: BlockgateError) => void> = [];
  private fenceError: BlockgateError | undefined;
  private lastRenew: Date | null = null;
  private renewFailures = 0;
  private lastError: string | null = null;
  private readonly log: Logger;

  private constructor(private readonly o: LeaseOptions<T>, private doc: LeaseDocument<T>, private etag: string) {
    this.log = (o.logger ?? silentLogger).child({ component: 'lease', resource: o.resource });
    const renewMs = o.renewMs ?? Math.max(50, Math.floor(doc.ttlMs / 4));
    if (renewMs > 0) {
      this.timer = setInterval(() => { void this.renew().catch(() => undefined); }, renewMs);
      this.timer.unref();
    }
  }

  static async acquire<T>(o: LeaseOptions<T>): Promise<Lease<T>> {
    const ttlMs = o.ttlMs ?? 60_000;
    const policy = o.takeover ?? 'expired';
    const log = (o.logger ?? silentLogger).child({ component: 'lease', resource: o.resource });
    for (let attempt = 0; attempt < 8; attempt++) {
      let cur: { doc: LeaseDocument<T>; etag: string } | undefined;
      try {
        const got = await o.store.get(o.key);
        cur = { doc: parseLease<T>(got.body, o.key), etag: got.etag };
      } catch (err) {
        if (!isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw err;
      }
      const now = new Date().toISOString();
      if (!cur) {
        if (!o.create) throw new BlockgateError(ErrorCodes.OBJECT_NOT_FOUND, `${o.resource} does not exist in the object store (no ${o.key})`);
        const doc: LeaseDocument<T> = {
          format: 'blockgate-lease', version: 1, resource: o.resource, epoch: 1, state: 'held', holder: o.holder, ttlMs,
          acquiredAt: now, renewedAt: now, data: await o.create(),
        };
        try {
          const { etag } = await o.store.put(o.key, encode(doc), { ifNoneMatch: '*' });
          log.info('lease created', { epoch: 1 });
          return new Lease(o, doc, etag);
        } catch (err) {
          if (isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) continue; // someone created it first
          throw err;
        }
      }
      const d = cur.doc;
      if (d.state === 'held' && d.holder.id !== o.holder.id) {
        let allowed = policy === 'force';
        if (!allowed && policy === 'expired') allowed = await expired(o.store, o.key, o.holder.id, d.ttlMs);
        if (!allowed) {
          throw new BlockgateError(ErrorCodes.LEASE_HELD,
            `${o.resource} is open for writing on another gateway: ${describeHolder(d.holder)}, epoch ${d.epoch}, last renewed ${d.renewedAt}; ` +
            `stop it there${policy === 'expired' ? `, or wait until its lease expires (${Math.round(d.ttlMs / 1000)} s without renewal)` : ''}, or take it over explicitly (takeover: force)`,
            { details: { key: o.key, epoch: d.epoch, holder: d.holder } });
        }
        log.warn('taking over a lease held by another gateway', { previous: d.holder, epoch: d.epoch, policy });
      }
      const doc: LeaseDocument<T> = { ...d, epoch: d.epoch + 1, state: 'held', holder: o.holder, ttlMs, acquiredAt: now, renewedAt: now };
      try {
        const { etag } = await o.store.put(o.key, encode(doc), { ifMatch: cur.etag });
        log.info('lease acquired', { epoch: doc.epoch, previousHolder: d.holder.id === o.holder.id ? 'self' : d.holder });
        return new Lease(o, doc, etag);
      } catch (err) {
        if (isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) continue; // changed under us: look again
        throw err;
      }
    }
    throw new BlockgateError(ErrorCodes.LEASE_HELD, `${o.resource}: the lease kept changing while this gateway tried to acquire it (another gateway is contending)`, { retryable: true });
  }

  get epoch(): number { return this.doc.epoch; }
  get data(): T { return this.doc.data; }
  get fenced(): boolean { return this.state === 'fenced'; }
  get fencedError(): BlockgateError | undefined { return this.fenceError; }

  /** Called once when the lease is found superseded. */
  onFenced(listener: (err: BlockgateError) => void): void {
    this.listeners.push(listener);
  }

  status(): LeaseStatus {
    return {
      epoch: this.doc.epoch, holder: this.doc.holder.id, state: this.state,
      lastRenewAt: this.lastRenew?.toISOString() ?? null, renewFailures: this.renewFailures, lastError: this.lastError,
    };
  }

  /**
   * Changes the record with a conditional put (ifMatch our ETag). Resolves
   * once the store holds the new record under our epoch; rejects with
   * ERR_FENCED when our epoch was superseded, or with the store's error
   * (nothing changed, or, for an ambiguous failure, re-checked next time).
   */
  update(change: (data: T) => T): Promise<void> {
    return this.serial(() => this.put(change(this.doc.data)));
  }

  /** Rewrites the record unchanged (renewedAt moves). */
  async renew(): Promise<void> {
    try {
      await this.serial(() => this.put(this.doc.data));
      this.renewFailures = 0;
    } catch (err) {
      if (!isBlockgateError(err, ErrorCodes.FENCED)) {
        this.renewFailures++;
        this.lastError = errorMessage(err);
        this.log.warn('lease renewal failed (still held; retrying)', { err: this.lastError, failures: this.renewFailures });
      }
      throw err;
    }
  }

  /** Clean close: marks the lease released (another gateway may take it at once). */
  async release(): Promise<void> {
    this.stop();
    if (this.state !== 'held') return;
    await this.serial(async () => {
      const doc: LeaseDocument<T> = { ...this.doc, state: 'released', renewedAt: new Date().toISOString() };
      const { etag } = await this.o.store.put(this.o.key, encode(doc), { ifMatch: this.etag });
      this.doc = doc;
      this.etag = etag;
      this.state = 'released';
    });
  }

  /** Stops renewing (the lease stays held in the store until it expires or this holder comes back). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private serial<R>(fn: () => Promise<R>): Promise<R> {
    const run = this.chain.then(() => {
      if (this.state === 'fenced') throw this.fenceError!;
      if (this.state === 'released') throw new BlockgateError(ErrorCodes.SHUTTING_DOWN, `${this.o.resource}: lease released`);
      return fn();
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async put(data: T): Promise<void> {
    const doc: LeaseDocument<T> = { ...this.doc, data, renewedAt: new Date().toISOString() };
    try {
      const { etag } = await this.o.store.put(this.o.key, encode(doc), { ifMatch: this.etag });
      this.doc = doc;
      this.etag = etag;
      this.lastRenew = new Date();
      return;
    } catch (err) {
      if (!isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) throw err;
    }
    // Refused: superseded, or our own earlier put landed although it reported a failure.
    let cur: LeaseDocument<T>;
    let etag: string;
    try {
      const got = await this.o.store.get(this.o.key);
      cur = parseLease<T>(got.body, this.o.key);
      etag = got.etag;
    } catch (err) {
      if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) throw this.fence(`its lease object ${this.o.key} was deleted`);
      throw err;
    }
    if (cur.epoch !== this.doc.epoch || cur.holder.id !== this.o.holder.id || cur.state !== 'held') {
      throw this.fence(`epoch ${this.doc.epoch} was superseded by epoch ${cur.epoch} held by ${describeHolder(cur.holder)}`);
    }
    // Still ours (an ambiguous earlier put landed): adopt it and try once more.
    this.doc = cur;
    this.etag = etag;
    const again = await this.o.store.put(this.o.key, encode(doc), { ifMatch: etag }).catch((err: unknown) => {
      if (isBlockgateError(err, ErrorCodes.PRECONDITION_FAILED)) return undefined;
      throw err;
    });
    if (!again) throw new BlockgateError(ErrorCodes.STORE_UNAVAILABLE, `${this.o.resource}: lease changed while being renewed; retrying`, { retryable: true });
    this.doc = doc;
    this.etag = again.etag;
    this.lastRenew = new Date();
  }

  private fence(why: string): BlockgateError {
    if (this.state !== 'fenced') {
      this.state = 'fenced';
      this.stop();
      this.fenceError = new BlockgateError(ErrorCodes.FENCED,
        `${this.o.resource} was taken over by another writer (${why}); this gateway no longer acknowledges writes to it`,
        { details: { key: this.o.key, epoch: this.doc.epoch } });
      this.log.error('FENCED: lease superseded; refusing writes from now on', { why, epoch: this.doc.epoch });
      for (const l of this.listeners) {
        try { l(this.fenceError); } catch { /* listeners must not break fencing */ }
      }
    }
    return this.fenceError!;
  }
}

function encode(doc: LeaseDocument<unknown>): Buffer {
  return Buffer.from(JSON.stringify(doc, null, 2) + '\n');
}

export function parseLease<T>(body: Buffer, key: string): LeaseDocument<T> {
  let d: LeaseDocument<T>;
  try {
    d = JSON.parse(body.toString('utf8')) as LeaseDocument<T>;
  } catch (err) {
    throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `lease object ${key} is not JSON: ${errorMessage(err)}`);
  }
  if (d.format !== 'blockgate-lease' || typeof d.epoch !== 'number' || !d.holder) {
    throw new BlockgateError(ErrorCodes.SNAPSHOT_CORRUPT, `${key} is not a blockgate lease object`);
  }
  if (d.version > 1) throw new BlockgateError(ErrorCodes.NOT_SUPPORTED, `lease object ${key} has version ${d.version}; this blockgate knows version 1`);
  return d;
}

/** Reads a lease object without taking it (status, tools). */
export async function readLease<T>(store: ObjectStore, key: string): Promise<LeaseDocument<T> | undefined> {
  try {
    return parseLease<T>((await store.get(key)).body, key);
  } catch (err) {
    if (isBlockgateError(err, ErrorCodes.OBJECT_NOT_FOUND)) return undefined;
    throw err;
  }
}

/** The lease was not renewed for ttlMs by the store's own clock (a probe object's lastModified is "now"). */
async function expired(store: ObjectStore, key: string, holderId: string, ttlMs: number): Promise<boolean> {
  const probe = `${key}.probe-${holderId.replace(/[^A-Za-z0-9._-]/g, '_')}`;
  await store.put(probe, Buffer.alloc(0));
  try {
    const [now, lease] = await Promise.all([store.head(probe), store.head(key)]);
    return now.lastModified.getTime() - lease.lastModified.getTime() > ttlMs;
  } finally {
    await store.delete(probe).catch(() => undefined);
  }
}
