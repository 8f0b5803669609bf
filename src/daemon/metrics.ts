// A minimal Prometheus registry: metrics are produced by collectors at scrape
// time from the live state (counters the data path already keeps), so the
// I/O path pays nothing for metrics. Text exposition format 0.0.4.

export type MetricType = 'counter' | 'gauge';

export interface Sample {
  readonly labels?: Record<string, string>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly samples: readonly Sample[];
}

export type Collector = () => MetricFamily[];

function escapeLabel(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"');
}

export class MetricsRegistry {
  private readonly collectors: Collector[] = [];

  register(collector: Collector): void {
    this.collectors.push(collector);
  }

  render(): string {
    const lines: string[] = [];
    for (const collect of this.collectors) {
      for (const fam of collect()) {
        lines.push(`# HELP ${fam.name} ${fam.help.replace(/\n/g, ' ')}`);
        lines.push(`# TYPE ${fam.name} ${fam.type}`);
        for (const s of fam.samples) {
          const labels = s.labels && Object.keys(s.labels).length > 0
            ? `{${Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`).join(',')}}`
            : '';
          lines.push(`${fam.name}${labels} ${Number.isFinite(s.value) ? s.value : 0}`);
        }
      }
    }
    return lines.join('\n') + '\n';
  }
}
