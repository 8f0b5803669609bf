// The Prometheus endpoint of a real daemon after real NBD traffic (nbdsh):
// per-command NBD latency histograms count exactly the requests sent, on a
// raw, a stored and a cached export; the object-store histograms count the
// stored and cached modes' requests separately; the per-mode state is one
// metric name with a `mode` label; prom-client's default process and
// event-loop metrics are there.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { adminRequest } from '../../src/daemon/admin-api.js';
import { startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { nbdshOk, requireTools } from '../harness/nbd-tools.js';

interface Sample { name: string; labels: Record<string, string>; value: number }

/** Parses the text exposition format (0.0.4): one sample per non-comment line. */
function parseExposition(text: string): { samples: Sample[]; types: Map<string, string> } {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const t = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (t) types.set(t[1]!, t[2]!);
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!;
    samples.push({ name: m[1]!, labels, value: m[3] === '+Inf' ? Infinity : Number(m[3]) });
  }
  return { samples, types };
}

function find(samples: Sample[], name: string, labels: Record<string, string>): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

function value(samples: Sample[], name: string, labels: Record<string, string>): number {
  const found = find(samples, name, labels);
  if (found.length !== 1) throw new Error(`${name}${JSON.stringify(labels)}: ${found.length} samples`);
  return found[0]!.value;
}


/** The NBD commands the script below sends to each export, by the `op` label. */
const SENT = { write: 3, read: 2, flush: 1, trim: 1, zero: 1, cache: 1, block_status: 1 };

const SCRIPT = `
import os
blocks = [os.urandom(65536) for i in range(3)]
for i in range(3):
    h.pwrite(blocks[i], i * 65536)
h.flush()
assert h.pread(65536, 0) == blocks[0]
assert h.pread(4096, 65536) == blocks[1][:4096]
h.trim(65536, 2 * 65536)
h.zero(65536, 4 * 65536)
h.cache(65536, 0)
h.block_status(65536, 0, lambda *args: 0)
`;
import { freePort } from '../harness/free-port.js';

describe('Prometheus metrics after NBD traffic', () => {
  let d: DaemonHandle;
  let dir: string;
  let url: string;

  beforeAll(async () => {
    requireTools('nbdsh');
    dir = tempDir();
    const port = await freePort();
    url = `http://127.0.0.1:${port}/metrics`;
    d = await startDaemon({
      metrics: { listen: `127.0.0.1:${port}` },
      dataDir: join(dir, 'data'),
      store: { url: join(dir, 'store') },
      volumes: [
        { name: 'r', mode: 'raw', size: '8MiB', disk: join(dir, 'r.img') },
        { name: 's', mode: 'stored', size: '8MiB', disk: join(dir, 's.img'), writeLog: { dir: join(dir, 's-log'), size: '32MiB' }, blockSize: '64KiB' },
        {
          name: 'c', mode: 'cached', size: '8MiB', blockSize: '64KiB', uploadInterval: '200ms',
          cache: { dir: join(dir, 'c-cache'), size: '8MiB' }, writeLog: { dir: join(dir, 'c-log'), size: '32MiB' },
        },
      ],
    }, { dir, timeoutMs: 60_000 });
    for (const name of ['r', 's', 'c']) await nbdshOk(SCRIPT, { uri: d.uri(name), baseAllocation: true });
    // A stored snapshot: the stored mode's uploads and snapshot records go to the store.
    const g = await adminRequest(d.adminSocket, 'POST', '/v1/snapshots', { volumes: ['s'], waitSeconds: 60 }) as { state: string };
    expect(g.state).toBe('complete');
  }, 120_000);

  afterAll(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('counts every NBD command in its latency histogram, per volume and mode', async () => {
    const { samples, types } = parseExposition(await (await fetch(url)).text());
    expect(types.get('blockgate_nbd_request_duration_seconds')).toBe('histogram');
    for (const [volume, mode] of [['r', 'raw'], ['s', 'stored'], ['c', 'cached']] as const) {
      for (const [op, n] of Object.entries(SENT)) {
        const labels = { volume, mode, op };
        expect(value(samples, 'blockgate_nbd_request_duration_seconds_count', labels), `${volume} ${op}`).toBe(n);
        expect(value(samples, 'blockgate_nbd_request_duration_seconds_bucket', { ...labels, le: '+Inf' })).toBe(n);
        expect(value(samples, 'blockgate_nbd_request_duration_seconds_sum', labels)).toBeGreaterThan(0);
        // The plain request counter agrees with the histogram.
        expect(value(samples, 'blockgate_nbd_requests_total', { volume, op })).toBe(n);
      }
      expect(value(samples, 'blockgate_volume_info', { volume, mode })).toBe(1);
    }
    // Cumulative buckets never decrease.
    const buckets = find(samples, 'blockgate_nbd_request_duration_seconds_bucket', { volume: 'r', op: 'write' });
    expect(buckets.length).toBeGreaterThan(10);
    for (let i = 1; i < buckets.length; i++) expect(buckets[i]!.value).toBeGreaterThanOrEqual(buckets[i - 1]!.value);
  });

  it('times object-store requests per mode and operation', async () => {
    const { samples, types } = parseExposition(await (await fetch(url)).text());
    expect(types.get('blockgate_object_store_request_duration_seconds')).toBe('histogram');
    const count = (mode: string, op: string): number => value(samples, 'blockgate_object_store_request_duration_seconds_count', { mode, op });
    // The stored snapshot put blocks (two random 64 KiB ones survive the trim: incompressible), a root and the group records.
    expect(count('stored', 'put')).toBeGreaterThan(2);
    expect(value(samples, 'blockgate_object_store_bytes_total', { mode: 'stored', direction: 'sent' })).toBeGreaterThanOrEqual(2 * 65536);
    // The cached volume took its lease (conditional puts) and read its record.
    expect(count('cached', 'put')).toBeGreaterThan(0);
    // Every operation observed has a consistent histogram (an operation never used has no series).
    const counted = find(samples, 'blockgate_object_store_request_duration_seconds_count', {});
    expect(counted.length).toBeGreaterThanOrEqual(2);
    for (const { labels } of counted) {
      expect(['stored', 'cached']).toContain(labels.mode);
      expect(['get', 'put', 'head', 'delete', 'list']).toContain(labels.op);
      expect(value(samples, 'blockgate_object_store_request_duration_seconds_bucket', { ...labels, le: '+Inf' })).toBe(count(labels.mode!, labels.op!));
    }
    // No raw volume uses the store.
    expect(find(samples, 'blockgate_object_store_request_duration_seconds_count', { mode: 'raw' })).toEqual([]);
  });

  it('labels per-mode state with mode instead of per-mode names', async () => {
    const text = await (await fetch(url)).text();
    const { samples } = parseExposition(text);
    expect(text).not.toMatch(/^blockgate_(stored|cached)_/m);
    expect(value(samples, 'blockgate_log_capacity_bytes', { volume: 's', mode: 'stored' })).toBe(32 * 1024 * 1024);
    expect(value(samples, 'blockgate_log_capacity_bytes', { volume: 'c', mode: 'cached' })).toBe(32 * 1024 * 1024);
    expect(value(samples, 'blockgate_uploaded_bytes_total', { volume: 's', mode: 'stored' })).toBeGreaterThan(0);
    expect(value(samples, 'blockgate_last_snapshot_timestamp_seconds', { volume: 's', mode: 'stored' })).toBeGreaterThan(1.7e9);
    expect(value(samples, 'blockgate_cache_capacity_bytes', { volume: 'c', mode: 'cached' })).toBe(8 * 1024 * 1024);
    expect(value(samples, 'blockgate_lease_epoch', { volume: 'c', mode: 'cached' })).toBeGreaterThan(0);
    expect(value(samples, 'blockgate_nbd_written_bytes_total', { volume: 'r' })).toBe(3 * 65536);
  });

  it('includes the default process and event-loop metrics', async () => {
    const { samples, types } = parseExposition(await (await fetch(url)).text());
    expect(types.get('process_cpu_user_seconds_total')).toBe('counter');
    expect(value(samples, 'process_cpu_user_seconds_total', {})).toBeGreaterThan(0);
    expect(value(samples, 'process_resident_memory_bytes', {})).toBeGreaterThan(1024 * 1024);
    expect(value(samples, 'nodejs_eventloop_lag_seconds', {})).toBeGreaterThanOrEqual(0);
    expect(value(samples, 'nodejs_heap_size_used_bytes', {})).toBeGreaterThan(0);
  });
});
