// A gateway without a store (the demo's config.example.yaml): the snapshot
// commands of the README answer that there is no store, with ERR_CONFIG,
// instead of the admin API's bare "no such endpoint".
import { execFile } from 'node:child_process';
import { rmSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockgateBin, startDaemon, type DaemonHandle } from '../harness/daemon.js';

const run = promisify(execFile);

describe('snapshot commands on a gateway without a store', () => {
  let d: DaemonHandle;

  beforeAll(async () => {
    d = await startDaemon({ volumes: [{ name: 'demo', mode: 'raw', size: '1MiB', disk: 'demo.img' }] });
  });

  afterAll(async () => {
    await d?.stop();
    if (d) rmSync(d.dir, { recursive: true, force: true });
  });

  it.each([
    ['snapshot', 'create', 'demo'],
    ['snapshot', 'volume-list'],
    ['snapshot', 'volume-delete', 'vsnap-000000000000000000000000'],
    ['volume', 'snapshot', 'demo'],
    ['volume', 'snapshots', 'demo'],
  ])('blockgate %s %s fails with "no store"', async (...args) => {
    const err = await run(process.execPath, [blockgateBin, ...args, '--admin-socket', d.adminSocket]).then(
      () => { throw new Error('expected a failure'); },
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(err.code).toBe(1);
    expect(err.stderr).toContain('this gateway has no store: section, so it has no snapshots');
    expect(err.stderr).toContain('[ERR_CONFIG]');
  });

  it('other admin endpoints still answer', async () => {
    const { stdout } = await run(process.execPath, [blockgateBin, 'volume', 'status', 'demo', '--admin-socket', d.adminSocket]);
    expect(stdout).toContain('volume demo: raw');
  });
});
