// The `tuning:` section end to end: a daemon started with tuning values runs
// with them and says so in `blockgate status` (JSON and text), along with the
// implementation each data path uses; a bad value is refused by
// `serve --check`, naming the key. The S3 store is the shared Ceph RGW, so
// "S3 direct requests" is read from the live store, not echoed from the config.
import { execFile, spawnSync } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { stringify } from 'yaml';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { createTestBucket } from '../harness/rgw.js';

const run = promisify(execFile);

interface StatusJson {
  dataPaths: {
    nativeAddon: { loaded: boolean; path?: string };
    crc32c: string;
    sha256: string;
    nowaitMax: number;
    s3DirectRequests: string;
    tuning: { nowaitMax: number; s3DirectRequests: boolean };
  };
}

describe('tuning: section', () => {
  const dir = tempDir('bg-tuning-');
  const daemons: DaemonHandle[] = [];
  afterAll(async () => {
    for (const d of daemons) await d.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  async function daemonWith(name: string, tuning: Record<string, unknown> | undefined, env: Record<string, string> = {}): Promise<DaemonHandle> {
    const s3 = inject('s3');
    const bucket = await createTestBucket(s3, `tuning-${name}`);
    const d = await startDaemon({
      admin: { socket: join(dir, `${name}.sock`) },
      dataDir: join(dir, `${name}-data`),
      store: { url: `s3://${bucket}/gw`, endpoint: s3.endpoint, region: s3.region, accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey, pathStyle: true },
      volumes: [{ name: 'r', mode: 'raw', size: '4MiB', disk: join(dir, `${name}.img`) }],
      ...(tuning ? { tuning } : {}),
    }, { dir, timeoutMs: 60_000, env });
    daemons.push(d);
    return d;
  }

  async function status(d: DaemonHandle): Promise<{ json: StatusJson; text: string }> {
    const json = await run(process.execPath, [blockgateBin, 'status', '--json', '--admin-socket', d.adminSocket]);
    const text = await run(process.execPath, [blockgateBin, 'status', '--admin-socket', d.adminSocket]);
    return { json: JSON.parse(json.stdout) as StatusJson, text: text.stdout };
  }

  it('a daemon started with tuning values runs with them and shows them in `blockgate status`', async () => {
    const d = await daemonWith('tuned', { nowaitMax: '16KiB', s3DirectRequests: false });
    // Real traffic on the raw volume, through the tuned path.
    await run('bash', ['-c', `head -c 1048576 /dev/urandom | nbdcopy - '${d.uri('r')}' && nbdcopy '${d.uri('r')}' - | wc -c`]);
    const { json, text } = await status(d);
    expect(json.dataPaths.tuning).toEqual({ nowaitMax: 16 * 1024, s3DirectRequests: false });
    expect(json.dataPaths.nativeAddon.loaded).toBe(true);
    expect(json.dataPaths.nowaitMax).toBe(16 * 1024);
    expect(json.dataPaths.s3DirectRequests).toBe('off');
    expect(['avx512', 'sse42', 'table']).toContain(json.dataPaths.crc32c);
    expect(json.dataPaths.sha256).toBe('native');
    expect(text).toMatch(new RegExp(`^data paths: native addon loaded, crc32c ${json.dataPaths.crc32c}, sha256 native, RWF_NOWAIT up to 16\\.0 KiB, S3 direct requests off$`, 'm'));
  });

  it('without a tuning section the defaults apply (S3 direct requests on with a custom endpoint, RWF_NOWAIT up to 64 KiB)', async () => {
    // The test-only fallbacks (docs/tuning.md) show in status too: it reports the code that runs, not the config.
    const d = await daemonWith('default', undefined, { BLOCKGATE_NATIVE_CRC: 'table', BLOCKGATE_NATIVE_SHA256: '0' });
    const { json, text } = await status(d);
    expect(json.dataPaths.tuning).toEqual({ nowaitMax: 64 * 1024, s3DirectRequests: true });
    expect(json.dataPaths.s3DirectRequests).toBe('on');
    expect(json.dataPaths.crc32c).toBe('table');
    expect(json.dataPaths.sha256).toBe('webcrypto');
    expect(text).toContain('crc32c table, sha256 webcrypto, RWF_NOWAIT up to 64.0 KiB, S3 direct requests on');
  });

  it('nowaitMax: 0 turns the RWF_NOWAIT path off', async () => {
    const d = await daemonWith('nowait-off', { nowaitMax: 0 });
    const { json, text } = await status(d);
    expect(json.dataPaths.nowaitMax).toBe(0);
    expect(text).toContain('RWF_NOWAIT off');
  });

  const check = (name: string, tuning: unknown): { status: number | null; stderr: string } => {
    const p = join(dir, `${name}.yaml`);
    writeFileSync(p, stringify({ volumes: [{ name: 'r', mode: 'raw', size: '4MiB', disk: join(dir, 'check.img') }], tuning }));
    const r = spawnSync(process.execPath, [blockgateBin, 'serve', '--check', '--config', p], { encoding: 'utf8' });
    return { status: r.status, stderr: r.stderr };
  };

  it.each([
    ['a size too large', { nowaitMax: '4MiB' }, /^blockgate: tuning\.nowaitMax: must be at most 1 MiB/],
    ['not a size', { nowaitMax: 'lots' }, /^blockgate: tuning\.nowaitMax: 'lots' is not a size/],
    ['not a boolean', { s3DirectRequests: 'maybe' }, /^blockgate: tuning\.s3DirectRequests: must be true or false/],
    ['an unknown knob', { s3Direct: false }, /^blockgate: tuning\.s3Direct: unknown key \(allowed: nowaitMax, s3DirectRequests\)/],
    ['not a mapping', [1], /^blockgate: tuning: must be a mapping/],
  ])('serve --check refuses %s, naming the key', (_what, tuning, message) => {
    const r = check(`bad-${String(_what).replace(/\W+/g, '-')}`, tuning);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(message);
    expect(r.stderr).toContain('[ERR_CONFIG]');
  });

  it('serve --check accepts good tuning values', () => {
    const r = check('good', { nowaitMax: '1MiB', s3DirectRequests: true });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
