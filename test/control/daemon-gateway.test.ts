// The real daemon as a gateway: `blockgate serve` with a control: section
// activates against a real control server through `blockgate activate`, then
// applies control commands to its own volumes: a cached volume created at run
// time is served over NBD at once, snapshotted, and survives a restart; the
// bandwidth limit applies to its object store; refusals come back as failed
// commands with their message.
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runOk as run } from '../harness/process.js';
import type { CommandView } from '../../src/control-plane/protocol.js';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { TOKEN, assertBuilt, cli, cliJson, controlConfig, startControl, waitUntil, type ControlHandle } from './helpers.js';

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

    const tape = await cli(['control', 'command', ...conn(), '--wait', 'create-volume', '--name', 'vol9', '--size', '1GiB', '--mode', 'tape']);
    expect(tape.code).toBe(1);
    // Refused when queued (the command schema knows the volume modes), before it reaches the gateway.
    expect(tape.stderr).toContain("create-volume: args.mode: must be one of raw, stored, cached (got 'tape')");
  });

  it('creates raw and stored volumes on command; a stored one takes a snapshot schedule', async () => {
    const raw = await cliJson<CommandView>(['control', 'command', ...conn(), '--wait', 'create-volume', '--name', 'vol2', '--size', '32MiB', '--mode', 'raw']);
    expect(raw).toMatchObject({ state: 'succeeded', result: { name: 'vol2', mode: 'raw', size: 32 * 1024 * 1024 } });
    const stored = await cliJson<CommandView>(['control', 'command', ...conn(), '--wait', 'create-volume', '--name', 'vol3', '--size', '32MiB', '--mode', 'stored']);
    expect(stored).toMatchObject({ state: 'succeeded', result: { name: 'vol3', mode: 'stored' } });
    for (const name of ['vol2', 'vol3']) {
      const { stdout } = await run('nbdinfo', ['--size', daemon.uri(name)]);
      expect(Number(stdout.trim())).toBe(32 * 1024 * 1024);
    }
    await run('bash', ['-c', `nbdcopy '${dir}/data.bin' '${daemon.uri('vol3')}'`]);
    const sched = await cliJson<CommandView>(['control', 'command', ...conn(), '--wait', 'set-snapshot-schedule', '--volume', 'vol3', '--every', '1h', '--retain', '3']);
    expect(sched).toMatchObject({ state: 'succeeded', result: { volume: 'vol3', intervalMs: 3_600_000, keep: 3 } });
  });

  it('keeps its activation and the run-time volumes across a restart', async () => {
    expect(await daemon.stop()).toBe(0);
    daemon = await startDaemon(daemonConfig(), { dir });
    await waitForLog(daemon, 'command channel connected');
    expect(logRecords(daemon).some((r) => r.msg === 'activation key issued')).toBe(false);
    for (const name of ['vol1', 'vol3']) {
      const { stdout } = await run('bash', ['-c', `nbdcopy '${daemon.uri(name)}' - | head -c 4194304 | cmp - '${dir}/data.bin' && echo same`]);
      expect(stdout.trim(), name).toBe('same');
    }
    const { stdout } = await run('nbdinfo', ['--size', daemon.uri('vol2')]);
    expect(Number(stdout.trim())).toBe(32 * 1024 * 1024);
  });
});
