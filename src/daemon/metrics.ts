// The daemon's Prometheus metrics, on prom-client: the library's default
// process and event-loop metrics; latency histograms of NBD requests (per
// volume, mode and command) and of object-store requests (per mode and
// operation), observed as requests complete; and gauges and counters read
// from live state when scraped (the data path already keeps those counters,
// so they cost it nothing). Per-mode state uses one metric name with a `mode`
// label (raw | stored | cached), never a name per mode.
// The hot-path observers are found once per export (and per command on first
// use), so a request pays two clock reads and one bucket increment.
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { opName, type RequestObserver } from '../nbd/export.js';
import type { StoreObserver, StoreOp } from '../object-store/metered.js';
import type { CachedVolumeStatus } from '../volumes/cached/runtime.js';
import type { StoredVolumeStatus } from '../volumes/stored/runtime.js';
import { FastHistogram, type HistogramChild } from './metrics-histogram.js';
import type { DaemonStatus } from './status.js';

export type VolumeMode = 'raw' | 'stored' | 'cached';

/** NBD request latency buckets (s): 25 µs (a page-cache hit) .. 10 s. */
const NBD_BUCKETS = [0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
/** Object-store request latency buckets (s): 1 ms .. 60 s (retries and bandwidth waits included). */
const STORE_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The live state read at scrape time. */
export interface MetricsSources {
  status(): DaemonStatus;
  stored(): ReadonlyArray<readonly [volume: string, status: StoredVolumeStatus]>;
  cached(): ReadonlyArray<readonly [volume: string, status: CachedVolumeStatus]>;
}

/** What one scrape reads, gathered once before the registry renders. */
interface ScrapeState {
  status: DaemonStatus;
  uploads: Array<{ volume: string; mode: 'stored' | 'cached'; s: StoredVolumeStatus | CachedVolumeStatus }>;
  stored: ReadonlyArray<readonly [string, StoredVolumeStatus]>;
  cached: ReadonlyArray<readonly [string, CachedVolumeStatus]>;
}

type Labels = Record<string, string>;
type Row = readonly [Labels, number];

const finite = (v: number): number => (Number.isFinite(v) ? v : 0);

export class DaemonMetrics {
  readonly registry = new Registry();
  private state: ScrapeState | undefined;
  private readonly nbdDuration: FastHistogram;
  private readonly storeDuration: Histogram<'mode' | 'op'>;
  private readonly storeErrors: Counter<'mode' | 'op'>;
  private readonly storeBytes: Counter<'mode' | 'direction'>;

  constructor(private readonly sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry });
    this.nbdDuration = new FastHistogram('blockgate_nbd_request_duration_seconds',
      'NBD request time from dispatch until the reply is handed to the socket, per volume, mode and command.',
      ['volume', 'mode', 'op'], NBD_BUCKETS, this.registry);
    this.storeDuration = new Histogram({
      name: 'blockgate_object_store_request_duration_seconds', registers: [this.registry], labelNames: ['mode', 'op'], buckets: STORE_BUCKETS,
      help: 'Object-store request time as the volumes see it (retries and bandwidth-limit waits included), per mode and operation.',
    });
    this.storeErrors = new Counter({
      name: 'blockgate_object_store_request_errors_total', registers: [this.registry], labelNames: ['mode', 'op'],
      help: 'Object-store requests that failed (after retries), per mode and operation.',
    });
    this.storeBytes = new Counter({
      name: 'blockgate_object_store_bytes_total', registers: [this.registry], labelNames: ['mode', 'direction'],
      help: 'Object payload bytes, direction "sent" (put bodies) or "received" (get bodies).',
    });
    this.defineStatusMetrics();
    this.defineUploadMetrics();
    this.defineStoredMetrics();
    this.defineCachedMetrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The text exposition: live state is read once, then every metric renders from it. */
  async render(): Promise<string> {
    const stored = this.sources.stored();
    const cached = this.sources.cached();
    this.state = {
      status: this.sources.status(), stored, cached,
      uploads: [
        ...stored.map(([volume, s]) => ({ volume, mode: 'stored' as const, s })),
        ...cached.map(([volume, s]) => ({ volume, mode: 'cached' as const, s })),
      ],
    };
    return this.registry.metrics();
  }

  /** The observer for one NBD export (give it to the export once). */
  nbdObserver(volume: string, mode: VolumeMode): RequestObserver {
    const histogram = this.nbdDuration;
    const byType: Array<HistogramChild | undefined> = [];
    return {
      requestDone(type: number, ms: number): void {
        (byType[type] ??= histogram.child({ volume, mode, op: opName(type) })).observeMs(ms);
      },
    };
  }

  /** The observer for one mode's view of the object store (MeteredObjectStore). */
  storeObserver(mode: VolumeMode): StoreObserver {
    const ops: StoreOp[] = ['get', 'put', 'head', 'delete', 'list'];
    const duration = Object.fromEntries(ops.map((op) => [op, this.storeDuration.labels({ mode, op })]));
    const errors = Object.fromEntries(ops.map((op) => [op, this.storeErrors.labels({ mode, op })]));
    const sent = this.storeBytes.labels({ mode, direction: 'sent' });
    const received = this.storeBytes.labels({ mode, direction: 'received' });
    return {
      requestDone(op, seconds, ok, bytes): void {
        duration[op]!.observe(seconds);
        if (!ok) errors[op]!.inc();
        if (bytes > 0) (op === 'put' ? sent : received).inc(bytes);
      },
    };
  }

  // ------------------------------------------------------------ scrape-time metrics

  /** A gauge or counter whose samples are read from the scrape state. */
  private live(type: 'gauge' | 'counter', name: string, help: string, labelNames: string[], rows: (s: ScrapeState) => Row[]): void {
    const read = (): Row[] => (this.state ? rows(this.state) : []);
    if (type === 'gauge') {
      new Gauge({ name, help, labelNames, registers: [this.registry], collect() { this.reset(); for (const [l, v] of read()) this.set(l, finite(v)); } });
    } else {
      new Counter({ name, help, labelNames, registers: [this.registry], collect() { this.reset(); for (const [l, v] of read()) this.inc(l, Math.max(0, finite(v))); } });
    }
  }

  private defineStatusMetrics(): void {
    const perVolume = (type: 'gauge' | 'counter', name: string, help: string, f: (v: DaemonStatus['volumes'][number]) => number): void =>
      this.live(type, name, help, ['volume'], (s) => s.status.volumes.map((v) => [{ volume: v.name }, f(v)]));
    this.live('gauge', 'blockgate_up', 'The daemon is running.', [], () => [[{}, 1]]);
    this.live('gauge', 'blockgate_uptime_seconds', 'Seconds since the daemon started.', [], (s) => [[{}, s.status.uptimeSeconds]]);
    this.live('gauge', 'blockgate_volume_info', 'One per served volume, labelled with its mode.', ['volume', 'mode'],
      (s) => s.status.volumes.map((v) => [{ volume: v.name, mode: v.mode }, 1]));
    perVolume('gauge', 'blockgate_volume_size_bytes', 'Volume size.', (v) => v.size);
    perVolume('gauge', 'blockgate_nbd_connections', 'NBD connections in transmission, per volume.', (v) => v.connections);
    this.live('counter', 'blockgate_nbd_requests_total', 'NBD requests received, per volume and command.', ['volume', 'op'],
      (s) => s.status.volumes.flatMap((v) => Object.entries(v.requests).map(([op, n]): Row => [{ volume: v.name, op }, n])));
    perVolume('counter', 'blockgate_nbd_read_bytes_total', 'Bytes returned by NBD READ.', (v) => v.bytesRead);
    perVolume('counter', 'blockgate_nbd_written_bytes_total', 'Bytes accepted by NBD WRITE.', (v) => v.bytesWritten);
    perVolume('counter', 'blockgate_nbd_request_errors_total', 'NBD requests answered with an error.', (v) => v.errors);
    this.live('gauge', 'blockgate_nbd_inflight_requests', 'NBD requests being processed.', [],
      (s) => [[{}, s.status.connections.reduce((n, c) => n + c.inFlight, 0)]]);
  }

  /** The write log and the uploader: the same state in the stored and the cached mode. */
  private defineUploadMetrics(): void {
    const m = (type: 'gauge' | 'counter', name: string, help: string, f: (s: StoredVolumeStatus | CachedVolumeStatus) => number): void =>
      this.live(type, name, help, ['volume', 'mode'], (st) => st.uploads.map(({ volume, mode, s }) => [{ volume, mode }, f(s)]));
    m('gauge', 'blockgate_log_used_bytes', 'Write log bytes in use.', (s) => s.log.usedBytes);
    m('gauge', 'blockgate_log_capacity_bytes', 'Write log capacity.', (s) => s.log.capacityBytes);
    m('gauge', 'blockgate_log_waiting_writers', 'Writes waiting for log space (backpressure).', (s) => s.log.waitingWriters);
    m('gauge', 'blockgate_upload_lag_seconds', 'Age of the oldest write not yet in the object store (RPO).', (s) => s.upload.lagSeconds);
    m('gauge', 'blockgate_upload_lag_bytes', 'Log bytes not yet in the object store.', (s) => s.upload.lagBytes);
    m('gauge', 'blockgate_upload_throughput_bytes_per_second', 'Upload throughput over the last 10 s.', (s) => s.upload.throughputBytesPerSec);
    m('counter', 'blockgate_uploaded_bytes_total', 'Block bytes uploaded.', (s) => s.upload.uploadedBytes);
    m('gauge', 'blockgate_upload_retrying', '1 while uploads are failing and being retried.', (s) => (s.upload.state === 'retrying' ? 1 : 0));
  }

  private defineStoredMetrics(): void {
    const m = (name: string, help: string, f: (s: StoredVolumeStatus) => number): void =>
      this.live('gauge', name, help, ['volume', 'mode'], (st) => st.stored.map(([volume, s]) => [{ volume, mode: 'stored' }, f(s)]));
    m('blockgate_last_snapshot_timestamp_seconds', 'Creation time of the newest root in the store.', (s) => (s.root ? Math.floor(Date.parse(s.root.createdAt) / 1000) : 0));
    m('blockgate_restore_blocks_remaining', 'Blocks a lazy restore still has to fetch.', (s) => (s.restore ? s.restore.totalBlocks - s.restore.restoredBlocks : 0));
  }

  private defineCachedMetrics(): void {
    const m = (type: 'gauge' | 'counter', name: string, help: string, f: (s: CachedVolumeStatus) => number): void =>
      this.live(type, name, help, ['volume', 'mode'], (st) => st.cached.map(([volume, s]) => [{ volume, mode: 'cached' }, f(s)]));
    m('counter', 'blockgate_cache_hits_total', 'Chunk cache hits.', (s) => s.cache.hits);
    m('counter', 'blockgate_cache_misses_total', 'Chunk cache misses (blocks fetched from the store).', (s) => s.cache.misses);
    m('gauge', 'blockgate_cache_hit_ratio', 'hits / (hits + misses) since start.', (s) => s.cache.hitRatio);
    m('gauge', 'blockgate_cache_bytes', 'Block bytes held by the chunk cache.', (s) => s.cache.bytesCached);
    m('gauge', 'blockgate_cache_capacity_bytes', 'Chunk cache capacity.', (s) => s.cache.capacityBytes);
    m('counter', 'blockgate_cache_evictions_total', 'Blocks evicted from the chunk cache.', (s) => s.cache.evictions);
    m('counter', 'blockgate_cache_fetch_errors_total', 'Failed block fetches from the store.', (s) => s.cache.fetchErrors);
    m('gauge', 'blockgate_lease_epoch', 'Epoch of this gateway\'s lease on the volume.', (s) => s.lease.epoch);
    m('gauge', 'blockgate_fenced', '1 when another gateway took the volume over (writes refused).', (s) => (s.fenced ? 1 : 0));
  }
}
