// The configuration channel with real processes: commands queued through the
// CLI reach an activated gateway agent over its long-poll, are applied through
// its GatewayCommandHandler (the runner's recording handler), and their
// results are visible from the CLI. Also: reconnection after a control server
// crash and restart, and two control servers sharing one registry (the command
// is queued at one server while the gateway is connected to the other).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommandView } from '../../src/control-plane/protocol.js';
import {
  PEER_SECRET, TOKEN, activatedAgent, assertBuilt, cli, cliJson, controlConfig, startAgent, startControl, tempDir, waitUntil,
  type AgentHandle, type ControlHandle,
} from './helpers.js';

const conn = (c: ControlHandle): string[] => ['--control', c.url, '--token', TOKEN];

function handlerCalls(agent: AgentHandle): Array<{ method: string; arg: Record<string, unknown> }> {
  return agent.records().filter((r) => r.msg === 'handler call') as unknown as Array<{ method: string; arg: Record<string, unknown> }>;
}

/**
 * Waits until the gateway is inside a held poll at `server` (a 'long poll' record with a hold, after
 * record index `from`); returns the record count then: the mark for deliveredByHeldPoll.
 */
async function inHeldPoll(server: ControlHandle, from = 0): Promise<number> {
  await server.waitFor((r) => r.msg === 'long poll' && Number(r.holdMs) > 0, 30_000, from);
  const recs = server.records();
  const latest = recs.filter((r) => r.msg === 'long poll').at(-1)!;
  expect(Number(latest.holdMs)).toBeGreaterThan(0);
  return recs.length;
}

/**
 * The command was delivered by the poll that was already held (woken by the enqueue), not by a later
 * poll after the hold ran out: between `mark` and its 'commands delivered' record, no new poll began.
 */
async function deliveredByHeldPoll(server: ControlHandle, mark: number, commandId: string): Promise<void> {
  const isDelivery = (r: Record<string, unknown>): boolean => r.msg === 'commands delivered' && (r.commands as string[]).includes(commandId);
  await server.waitFor(isDelivery, 10_000, mark);
  const after = server.records().slice(mark);
  const delivered = after.findIndex(isDelivery);
  expect(after.slice(0, delivered).filter((r) => r.msg === 'long poll'), 'a new poll began before the delivery').toEqual([]);
}

beforeAll(() => assertBuilt());

describe('commands over the long-poll channel', () => {
  let control: ControlHandle;
  let agent: AgentHandle;
  beforeAll(async () => {
    // A long hold: a command that arrives within a couple of seconds proves the held poll returned early.
    control = await startControl(controlConfig({ longPollHold: '25s' }));
    agent = await activatedAgent(control, 'gw-cmd', ['--fail-volume', 'doomed', '--slow-volume', 'slowpoke']);
  });
  afterAll(async () => { await agent?.stop(); await control?.stop(); });

  it('every command type is applied through the handler and its result is visible from the CLI', async () => {
    // The agent is in a held poll (25 s hold); the command must reach it through that poll.
    const held = await inHeldPoll(control);
    const created = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', '--wait', '--timeout', '20s',
      'create-volume', '--name', 'vol1', '--size', '1GiB', '--mode', 'raw']);
    await deliveredByHeldPoll(control, held, created.id);
    expect(created).toMatchObject({ type: 'create-volume', state: 'succeeded', gateway: 'gw-cmd', args: { name: 'vol1', size: 1024 ** 3, mode: 'raw' }, result: { volume: 'vol1' } });
    expect(created.deliveries).toBe(1);

    const snap = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', '--wait',
      'snapshot', '--volume', 'vol1', 'vol2']);
    expect(snap).toMatchObject({ state: 'succeeded', args: { volumes: ['vol1', 'vol2'] } });

    const bw = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', '--wait',
      'set-bandwidth', '--upload', '10MiB', '--download', 'unlimited']);
    expect(bw).toMatchObject({ state: 'succeeded', result: { bandwidth: { upload: 10 * 1024 * 1024, download: null } } });

    const sched = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', '--wait',
      'set-snapshot-schedule', '--volume', 'vol1', '--every', '1h', '--retain', '24']);
    expect(sched).toMatchObject({ state: 'succeeded', args: { volume: 'vol1', intervalSeconds: 3600, retain: 24 } });

    expect(handlerCalls(agent).map((c) => [c.method, c.arg])).toEqual([
      ['createVolume', { name: 'vol1', size: 1024 ** 3, mode: 'raw' }],
      ['snapshot', { volumes: ['vol1', 'vol2'] }],
      ['setBandwidthLimit', { upload: 10 * 1024 * 1024, download: null }],
      ['setSnapshotSchedule', { volume: 'vol1', intervalSeconds: 3600, retain: 24 }],
    ]);
  });

  it('a failing handler call is reported as failed with its message; --wait exits 1', async () => {
    const r = await cli(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', '--wait', 'create-volume', '--name', 'doomed', '--size', '5G']);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('failed');
    expect(r.stderr).toMatch(/^blockgate: command cmd-\S+ \(create-volume\) failed on gateway 'gw-cmd': cannot create volume doomed: no space left.*\[ERR_NO_SPACE\] \[ERR_COMMAND_FAILED\]\n$/);
  });

  it('states queued → delivered → succeeded are visible with `control commands`', async () => {
    // slowpoke takes 3 s in the handler: delivered, not yet succeeded.
    const q = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', 'create-volume', '--name', 'slowpoke', '--size', '1M']);
    expect(['queued', 'delivered']).toContain(q.state);
    await waitUntil(async () => (await cliJson<CommandView[]>(['control', 'commands', ...conn(control), '--gateway', 'gw-cmd'])).find((c) => c.id === q.id && c.state === 'delivered'), 10_000, 'delivered');
    const done = await waitUntil(async () => (await cliJson<CommandView[]>(['control', 'commands', ...conn(control), '--gateway', 'gw-cmd'])).find((c) => c.id === q.id && c.state === 'succeeded'), 15_000, 'succeeded');
    expect(done.completedAt).not.toBeNull();

    // With the gateway stopped, a command stays queued; it is delivered when the gateway comes back.
    await agent.stop();
    const queued = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', 'set-bandwidth', '--download', '1MiB']);
    const listed = await cliJson<CommandView[]>(['control', 'commands', ...conn(control), '--gateway', 'gw-cmd']);
    expect(listed.find((c) => c.id === queued.id)?.state).toBe('queued');
    agent = await startAgent(agent.stateDir, control.url, ['--fail-volume', 'doomed']);
    await waitUntil(async () => (await cliJson<CommandView[]>(['control', 'commands', ...conn(control), '--gateway', 'gw-cmd'])).find((c) => c.id === queued.id && c.state === 'succeeded'), 15_000, 'queued command to succeed after the gateway restarted');

    const all = await cliJson<CommandView[]>(['control', 'commands', ...conn(control), '--gateway', 'gw-cmd']);
    expect(all.map((c) => c.state)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded', 'failed', 'succeeded', 'succeeded']);
    const text = await cli(['control', 'commands', ...conn(control), '--gateway', 'gw-cmd']);
    expect(text.code).toBe(0);
    expect(text.stdout.trim().split('\n')).toHaveLength(7);
    expect(text.stdout).toContain('error: cannot create volume doomed');
  });

  it('bad command arguments are refused when queued, with a one-line error', async () => {
    const name = await cli(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', 'create-volume', '--name', 'bad name!', '--size', '1G']);
    expect(name.code).toBe(1);
    expect(name.stderr).toMatch(/^blockgate: create-volume: args\.name: 'bad name!' must be 1-128 characters.*\[ERR_INVALID_ARGUMENT\]\n$/);
    const size = await cli(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', 'create-volume', '--name', 'v', '--size', '12XB']);
    expect(size.code).toBe(1);
    expect(size.stderr).toContain("--size: '12XB' is not a size");
    const every = await cli(['control', 'command', ...conn(control), '--gateway', 'gw-cmd', 'set-snapshot-schedule', '--volume', 'v', '--every', '5s']);
    expect(every.code).toBe(1);
    expect(every.stderr).toContain('set-snapshot-schedule: args.intervalSeconds: must be a number of seconds >= 60 (got 5)');
    const noGw = await cli(['control', 'command', ...conn(control), 'snapshot', '--volume', 'v']);
    expect(noGw.code).toBe(1);
    expect(noGw.stderr).toContain('--gateway NAME is required');
  });
});

describe('long-poll reconnect', () => {
  it('the agent reconnects after the control server is killed and restarted, and commands flow again', async () => {
    const dir = tempDir('bg-control-');
    let control = await startControl(controlConfig({ longPollHold: '5s' }), dir);
    const agent = await activatedAgent(control, 'gw-restart');
    try {
      const before = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-restart', '--wait', 'snapshot', '--volume', 'a']);
      expect(before.state).toBe('succeeded');

      const port = control.port;
      await control.stop('SIGKILL'); // a crash, not a clean shutdown
      const mark = agent.records().length;
      await agent.waitFor((r) => r.msg === 'control channel error; retrying', 15_000, mark);

      // Same port, same registry directory.
      control = await startControl(controlConfig({ longPollHold: '5s', listen: `127.0.0.1:${port}` }), dir, 'control-restarted');
      await agent.waitFor((r) => r.msg === 'control server reachable again', 20_000, mark);
      const after = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-restart', '--wait', '--timeout', '30s', 'snapshot', '--volume', 'b']);
      expect(after.state).toBe('succeeded');
      expect(handlerCalls(agent).map((c) => c.arg)).toEqual([{ volumes: ['a'] }, { volumes: ['b'] }]);

      // A clean shutdown (SIGTERM) also ends held polls (exit 0, no SIGKILL) and the agent comes back again.
      await inHeldPoll(control);
      expect(await control.stop()).toBe(0);
      control = await startControl(controlConfig({ longPollHold: '5s', listen: `127.0.0.1:${port}` }), dir, 'control-restarted-2');
      const again = await cliJson<CommandView>(['control', 'command', ...conn(control), '--gateway', 'gw-restart', '--wait', '--timeout', '30s', 'snapshot', '--volume', 'c']);
      expect(again.state).toBe('succeeded');
    } finally {
      await agent.stop();
      await control.stop();
    }
  });
});

describe('two control servers sharing one registry', () => {
  let owner: ControlHandle;
  let peer: ControlHandle;
  let agent: AgentHandle | undefined;
  beforeAll(async () => {
    owner = await startControl(controlConfig({ longPollHold: '25s' }), tempDir('bg-owner-'), 'owner');
    const { dataDir: _drop, ...peerCfg } = controlConfig({ longPollHold: '25s', registry: { url: owner.url } });
    peer = await startControl(peerCfg, tempDir('bg-peer-'), 'peer');
  });
  afterAll(async () => { await agent?.stop(); await peer?.stop(); await owner?.stop(); });

  it('a gateway held by the peer gets commands queued at the owner at once; results are visible at both', async () => {
    expect(existsSync(join(peer.dir, 'data'))).toBe(false); // the peer has no store of its own
    // The agent talks only to the peer; the administrator talks only to the owner.
    agent = await activatedAgent(owner, 'gw-far', [], peer.url);
    const gws = await cliJson<Array<{ name: string; state: string; connectedVia: string }>>(['control', 'gateways', ...conn(owner)]);
    expect(gws.find((g) => g.name === 'gw-far')).toMatchObject({ state: 'activated', connectedVia: peer.url });

    const heldAtPeer = await inHeldPoll(peer); // the agent is now in a 25 s held poll at the peer
    const c = await cliJson<CommandView>(['control', 'command', ...conn(owner), '--gateway', 'gw-far', '--wait', '--timeout', '20s',
      'set-bandwidth', '--upload', '1MiB']);
    expect(c.state).toBe('succeeded');
    await deliveredByHeldPoll(peer, heldAtPeer, c.id); // the owner forwarded a notification that woke the peer's held poll
    await owner.waitFor((r) => r.msg === 'forwarded command notification' && r.to === peer.url, 5000);

    const atPeer = await cliJson<CommandView[]>(['control', 'commands', ...conn(peer), '--gateway', 'gw-far']);
    const atOwner = await cliJson<CommandView[]>(['control', 'commands', ...conn(owner), '--gateway', 'gw-far']);
    expect(atPeer).toEqual(atOwner);
    expect(atPeer.map((x) => [x.type, x.state])).toEqual([['set-bandwidth', 'succeeded']]);

    // And the other way round: queued at the peer, the gateway reconnected to the owner.
    await agent.stop();
    agent = await startAgent(agent.stateDir, owner.url);
    await agent.waitFor((r) => r.msg === 'command channel connected');
    const heldAtOwner = await inHeldPoll(owner, owner.records().length);
    const d = await cliJson<CommandView>(['control', 'command', ...conn(peer), '--gateway', 'gw-far', '--wait', '--timeout', '20s', 'snapshot', '--volume', 'x']);
    expect(d.state).toBe('succeeded');
    await deliveredByHeldPoll(owner, heldAtOwner, d.id);
    expect(handlerCalls(agent).map((x) => x.method)).toEqual(['snapshot']);
  });

  it('a second owner of the same registry directory is refused with a clear error', async () => {
    const r = await cli(['control', 'serve', '--config', owner.configPath]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is in use by another control server');
    expect(r.stderr).toContain('[ERR_CONFIG]');
  });

  it('peer endpoints need the peer secret', async () => {
    const { requestJson } = await import('../../src/control-plane/http.js');
    const e = await requestJson(`${owner.url}/internal/v1/store/listGateways`, { body: { args: ['x'] }, headers: { authorization: 'Peer wrong-secret-000000000000' } })
      .then(() => undefined, (err: { code: string }) => err.code);
    expect(e).toBe('ERR_CONTROL_UNAUTHORIZED');
    const ok = await requestJson<{ value: unknown[] }>(`${owner.url}/internal/v1/store/listGateways`, { body: { args: ['x'] }, headers: { authorization: `Peer ${PEER_SECRET}` } });
    expect(ok.value).toEqual([]);
  });
});

describe('control server over TLS', () => {
  it('agent and CLI trust the server through --ca; without it the CLI refuses the certificate in one line', async () => {
    const dir = tempDir('bg-tls-');
    const { execFileSync } = await import('node:child_process');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '2'], { stdio: 'ignore' });
    const control = await startControl(controlConfig({ tls: { cert: 'cert.pem', key: 'key.pem' } }), dir);
    let agent: AgentHandle | undefined;
    try {
      expect(control.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ca = join(dir, 'cert.pem');
      agent = await startAgent(tempDir('bg-gw-'), control.url, ['--ca', ca]);
      await agent.waitFor((r) => r.msg === 'activation key issued');
      const untrusted = await cli(['activate', ...conn(control), '--gateway', agent.activationAddress, '--name', 'gw-tls']);
      expect(untrusted.code).toBe(1);
      expect(untrusted.stderr.trim().split('\n')).toHaveLength(1);
      expect(untrusted.stderr).toContain('[ERR_CONTROL_UNAVAILABLE]');
      const ok = await cli(['activate', ...conn(control), '--ca', ca, '--gateway', agent.activationAddress, '--name', 'gw-tls']);
      expect(ok.stderr).toBe('');
      await agent.waitFor((r) => r.msg === 'command channel connected');
      const c = await cliJson<CommandView>(['control', 'command', ...conn(control), '--ca', ca, '--gateway', 'gw-tls', '--wait', 'snapshot', '--volume', 'secure']);
      expect(c.state).toBe('succeeded');
    } finally {
      await agent?.stop();
      await control.stop();
    }
  });
});
