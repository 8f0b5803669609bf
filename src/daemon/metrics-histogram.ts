// A latency histogram for the NBD hot path, exposed through prom-client's
// registry as an ordinary Prometheus histogram (_bucket{le}, _sum, _count).
// Why not prom-client's Histogram: its labelled child re-validates and
// re-hashes the labels on every observe() (~400 ns measured, about 5% of a
// 4 KiB NBD request's CPU); a child here is a bucket array found once per
// export and command, and observeMs() is a short scan and three additions
// (~10 ns). docs/observability.md has the measurements.
// Invariant: counts[i] holds the observations in (bounds[i-1], bounds[i]]
// (the last slot: above every bound); buckets are made cumulative only when
// scraped.
import type { Metric, Registry } from 'prom-client';

export class HistogramChild {
  /** Per-bucket (not cumulative) counts; slot bounds.length is +Inf. */
  readonly counts: Float64Array;
  sumMs = 0;
  count = 0;

  constructor(private readonly boundsMs: Float64Array, readonly labels: Readonly<Record<string, string>>) {
    this.counts = new Float64Array(boundsMs.length + 1);
  }

  observeMs(ms: number): void {
    const b = this.boundsMs;
    let i = 0;
    while (i < b.length && ms > b[i]!) i++;
    this.counts[i]!++;
    this.sumMs += ms;
    this.count++;
  }
}

interface Sample {
  value: number;
  labels: Record<string, string | number>;
  metricName: string;
}

export class FastHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly boundsMs: Float64Array;
  private readonly children = new Map<string, HistogramChild>();

  /** `bucketsSeconds`: upper bounds in seconds, ascending (as prom-client's `buckets`). */
  constructor(readonly name: string, readonly help: string, readonly labelNames: readonly string[], private readonly bucketsSeconds: readonly number[], registry: Registry) {
    if (bucketsSeconds.some((b, i) => i > 0 && b <= bucketsSeconds[i - 1]!)) throw new Error(`${name}: buckets must ascend`);
    this.boundsMs = Float64Array.from(bucketsSeconds, (s) => s * 1000);
    // prom-client formats anything with name/type/get(); its typings only list its own classes.
    registry.registerMetric(this as unknown as Metric);
  }

  /** The child for one label set (created on first use): look it up once, observe many times. */
  child(labels: Record<string, string>): HistogramChild {
    const key = this.labelNames.map((n) => labels[n] ?? '').join('\u0000');
    let c = this.children.get(key);
    if (!c) {
      c = new HistogramChild(this.boundsMs, Object.fromEntries(this.labelNames.map((n) => [n, labels[n] ?? ''])));
      this.children.set(key, c);
    }
    return c;
  }

  reset(): void {
    for (const c of this.children.values()) {
      c.counts.fill(0);
      c.sumMs = 0;
      c.count = 0;
    }
  }

  get(): { name: string; help: string; type: 'histogram'; aggregator: 'sum'; values: Sample[] } {
    const values: Sample[] = [];
    for (const c of this.children.values()) {
      let cumulative = 0;
      for (let i = 0; i < this.bucketsSeconds.length; i++) {
        cumulative += c.counts[i]!;
        values.push({ value: cumulative, labels: { le: this.bucketsSeconds[i]!, ...c.labels }, metricName: `${this.name}_bucket` });
      }
      values.push({ value: c.count, labels: { le: '+Inf', ...c.labels }, metricName: `${this.name}_bucket` });
      values.push({ value: c.sumMs / 1000, labels: { ...c.labels }, metricName: `${this.name}_sum` });
      values.push({ value: c.count, labels: { ...c.labels }, metricName: `${this.name}_count` });
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }
}
