// The real daemon as a gateway: `blockgate serve` with a control: section
// activates against a real control server through `blockgate activate`, then
// applies control commands to its own volumes: a cached volume created at run
// time is served over NBD at once, snapshotted, and survives a restart; the
// bandwidth limit applies to its object store; refusals come back as failed
// commands with their message.
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandView } from '../../src/control/protocol.js';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { TOKEN, assertBuilt, cli, cliJson, controlConfig, startControl, waitUntil, type ControlHandle } from './helpers.js';

const run = promisify(execFile);

function logRecords(d: DaemonHandle): Array<Record<string, unknown>> {
  return d.output().split('\n').flatMap((l) => { try { return [JSON.parse(l) as Record<string, unknown>]; } catch { return []; } });
}

async function waitForLog(d: DaemonHandle, msg: string, timeoutMs = 30_000): Promise<Record<string, unknown>> {
  return waitUntil(async () => logRecords(d).find((r) => r.msg === msg), timeoutMs, `daemon log "${msg}"`);
}

describe('daemon as an activated gateway', () => {
  let control: ControlHandle;
  let daemon: DaemonHandle;
  const dir = tempDir('bg-daemon-gw-');
  const conn = (): string[] => ['--control', control.url, '--token', TOKEN, '--gateway', 'gw-daemon'];
  const daemonConfig = (): Record<string, unknown> => ({
    store: { url: `file://${join(dir, 'store')}` },
    dataDir: join(dir, 'data'),
    control: { url: control.url, activationListen: '127.0.0.1:0' },
    volumes: [{ name: 'boot', mode: 'raw', size: '16MiB', disk: join(dir, 'boot.img') }],
  });

  beforeAll(async () => {
    assertBuilt();
    control = await startControl(controlConfig({ longPollHold: '10s' }));
    daemon = await startDaemon(daemonConfig(), { dir });
  });
  afterAll(async () => {
    await daemon?.stop();
    await control?.stop();
  });

  it('activates through `blockgate activate` using the key on its local endpoint', async () => {
    const issued = await waitForLog(daemon, 'activation key issued');
    const endpoint = new URL(String(issued.endpoint));
    const r = await cli(['activate', '--control', control.url, '--gateway', endpoint.host, '--name', 'gw-daemon', '--token', TOKEN]);
    expect(r.code, r.stderr).toBe(0);
    await waitForLog(daemon, 'gateway activated');
    await waitForLog(daemon, 'command channel connected');
    const { stdout } = await run(process.execPath, [blockgateBin, 'status', '--json', '--admin-socket', daemon.adminSocket]);
    expect(JSON.parse(stdout).gateway).toMatchObject({ state: 'activated', name: 'gw-daemon', account: 'acme', connected: true });
  });

  it('creates a cached volume on command and serves it over NBD at once', async () => {
    const created = await cliJson<CommandView>(['control', 'command', ...conn(), '--wait', '--timeout', '60s',
      'create-volume', '--name', 'vol1', '--size', '64MiB', '--mode', 'cached']);
    expect(created).toMatchObject({ state: 'succeeded', result: { name: 'vol1', size: 64 * 1024 * 1024 } });
    const { stdout } = await run('nbdinfo', ['--size', daemon.uri('vol1')]);
    expect(Number(stdout.trim())).toBe(64 * 1024 * 1024);
    await run('bash', ['-c', `head -c 4194304 /dev/urandom > '${dir}/data.bin' && nbdcopy '${dir}/data.bin' '${daemon.uri('vol1')}'`]);
  });

  it('snapshots it, limits bandwidth, and refuses what it cannot do with a clear message', async () => {
    const snap = await cliJson<CommandView>(['control', 'command', ...conn(), '--wait', '--timeout', '120s', 'snapshot', '--volume', 'vol1']);
    expect(snap.state, JSON.stringify(snap)).toBe('succeeded');
    expect(JSON.stringify(snap.result)).toMatch(/snap-[0-9a-f]+/);

    const bw = await cliJson<CommandView>(['control', 'command', ...conn(), '--wait', 'set-bandwidth', '--upload', '10MiB', '--download', 'unlimited']);
    expect(bw).toMatchObject({ state: 'succeeded', result: { upload: 10 * 1024 * 1024, download: null } });

    const sched = await cli(['control', 'command', ...conn(), '--wait', 'set-snapshot-schedule', '--volume', 'vol1', '--every', '1h']);
    expect(sched.code).toBe(1);
    expect(sched.stderr).toContain('snapshot schedules are for stored volumes');

    const raw = await cli(['control', 'command', ...conn(), '--wait', 'create-volume', '--name', 'vol2', '--size', '1GiB', '--mode', 'raw']);
    expect(raw.code).toBe(1);
    expect(raw.stderr).toContain("volumes of mode 'raw' cannot be created at run time");
  });

  it('keeps its activation and the run-time volume across a restart', async () => {
    expect(await daemon.stop()).toBe(0);
    daemon = await startDaemon(daemonConfig(), { dir });
    await waitForLog(daemon, 'command channel connected');
    expect(logRecords(daemon).some((r) => r.msg === 'activation key issued')).toBe(false);
    const { stdout } = await run('bash', ['-c', `nbdcopy '${daemon.uri('vol1')}' - | head -c 4194304 | cmp - '${dir}/data.bin' && echo same`]);
    expect(stdout.trim()).toBe('same');
  });
});
