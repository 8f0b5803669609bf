// FastHistogram (the NBD latency histogram) renders as a Prometheus
// histogram through prom-client's registry: cumulative buckets with
// inclusive upper bounds (le), +Inf = count, sum in seconds, one series set
// per child; the same answers as prom-client's own Histogram.
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FastHistogram } from '../../src/daemon/metrics-histogram.js';

const BUCKETS = [0.001, 0.01, 0.1];

describe('FastHistogram', () => {
  it('renders what prom-client\'s Histogram renders for the same observations', async () => {
    const fastReg = new Registry();
    const promReg = new Registry();
    const fast = new FastHistogram('lat_seconds', 'h', ['volume', 'op'], BUCKETS, fastReg);
    const prom = new Histogram({ name: 'lat_seconds', help: 'h', labelNames: ['volume', 'op'], buckets: BUCKETS, registers: [promReg] });
    // On a bound (inclusive), between bounds, above every bound; two children.
    const samplesMs = { read: [1, 0.5, 10, 10.5, 100, 250], write: [0.25] };
    for (const [op, list] of Object.entries(samplesMs)) {
      const f = fast.child({ volume: 'v', op });
      const p = prom.labels({ volume: 'v', op });
      for (const ms of list) { f.observeMs(ms); p.observe(ms / 1000); }
    }
    const lines = async (r: Registry): Promise<string[]> => (await r.metrics()).split('\n').filter((l) => l !== '').sort();
    const fastLines = await lines(fastReg);
    // Sums may differ in the last digit (ms summed, then divided once); compare them numerically.
    const numeric = (ls: string[]): Array<[string, number]> => ls.filter((l) => !l.startsWith('#')).map((l) => {
      const i = l.lastIndexOf(' ');
      return [l.slice(0, i), Number(l.slice(i + 1))];
    });
    const a = numeric(fastLines);
    const b = numeric(await lines(promReg));
    expect(a.map((x) => x[0])).toEqual(b.map((x) => x[0]));
    a.forEach(([, v], i) => expect(v).toBeCloseTo(b[i]![1], 9));
    expect(fastLines).toContain('lat_seconds_bucket{le="0.001",volume="v",op="read"} 2');
    expect(fastLines).toContain('lat_seconds_bucket{le="+Inf",volume="v",op="read"} 6');
    expect(fastLines).toContain('# TYPE lat_seconds histogram');
  });

  it('finds a child once per label set, and refuses buckets that do not ascend', () => {
    const r = new Registry();
    const h = new FastHistogram('x_seconds', 'h', ['op'], BUCKETS, r);
    expect(h.child({ op: 'read' })).toBe(h.child({ op: 'read' }));
    expect(h.child({ op: 'read' })).not.toBe(h.child({ op: 'write' }));
    expect(() => new FastHistogram('y_seconds', 'h', [], [0.1, 0.01], r)).toThrow(/ascend/);
  });
});
