// Daemon behaviour seen from outside: a unix-socket listener serving several
// exports (next to TCP), disk directories created on demand, SIGTERM with
// writes in flight (they complete, are on disk, exit 0), SIGTERM with idle
// clients (the daemon still exits promptly). The CLI (--check, --help) is in
// cli.test.ts.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { hasLogRecord, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { nbdshOk, requireTools, runOk, waitFor } from '../harness/nbd-tools.js';
import { CMD, OPT, RawClient } from './raw-client.js';

const MiB = 1024 * 1024;

let dir: string;
const daemons: DaemonHandle[] = [];

beforeAll(() => {
  requireTools('nbdinfo', 'nbdsh');
  dir = tempDir('blockgate-daemon-');
});

afterEach(async () => {
  for (const d of daemons.splice(0)) await d.kill();
});

afterAll(() => {
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function daemon(name: string, config: Record<string, unknown>): Promise<DaemonHandle> {
  const ddir = join(dir, name);
  mkdirSync(ddir, { recursive: true });
  const d = await startDaemon(config, { dir: ddir });
  daemons.push(d);
  return d;
}

describe('listeners', () => {
  it('a unix socket listener serves several exports (and a TCP listener at the same time)', async () => {
    const sock = join(dir, 'unix', 'nbd.sock');
    mkdirSync(join(dir, 'unix'), { recursive: true });
    const d = await daemon('unix', {
      listen: [{ unix: sock }, { tcp: '127.0.0.1:0' }],
      volumes: [
        { name: 'u1', mode: 'raw', size: '8MiB', disk: join(dir, 'unix', 'u1.img'), description: 'unix one' },
        { name: 'u2', mode: 'raw', size: '16MiB', disk: join(dir, 'unix', 'u2.img') },
      ],
    });
    expect(d.unixSocket).toBe(sock);
    expect(statSync(sock).isSocket()).toBe(true);
    const list = JSON.parse((await runOk('nbdinfo', ['--list', '--json', `nbd+unix:///?socket=${sock}`])).stdout) as { exports: Array<{ 'export-name': string; 'export-size': number; description?: string }> };
    expect(list.exports.map((e) => [e['export-name'], e['export-size']])).toEqual([['u1', 8 * MiB], ['u2', 16 * MiB]]);
    expect(list.exports[0]!.description).toBe('unix one');
    // Write over unix on both exports, read back over TCP.
    await nbdshOk(String.raw`h.pwrite(b'unix-1' * 1000, 4096)`, { uri: `nbd+unix:///u1?socket=${sock}` });
    await nbdshOk(String.raw`h.pwrite(b'unix-2' * 1000, 8192)`, { uri: `nbd+unix:///u2?socket=${sock}` });
    await nbdshOk(String.raw`assert h.pread(6000, 4096) == b'unix-1' * 1000`, { uri: d.uri('u1') });
    await nbdshOk(String.raw`assert h.pread(6000, 8192) == b'unix-2' * 1000`, { uri: d.uri('u2') });
    // Clean stop removes the socket file.
    expect(await d.stop()).toBe(0);
    expect(existsSync(sock)).toBe(false);
  });

  it('a missing disk directory is created; the file is sparse at the configured size', async () => {
    const disk = join(dir, 'nested', 'a', 'b', 'c', 'vol.img');
    expect(existsSync(join(dir, 'nested'))).toBe(false);
    const d = await daemon('mkdir', { volumes: [{ name: 'v', mode: 'raw', size: '1GiB', disk }] });
    const st = statSync(disk);
    expect(st.size).toBe(1024 * MiB);
    expect(st.blocks * 512).toBeLessThan(MiB);
    expect((await runOk('nbdinfo', ['--size', d.uri('v')])).stdout.trim()).toBe(String(1024 * MiB));
    expect(await d.stop()).toBe(0);
  });
});

describe('SIGTERM', () => {
  it('with FUA writes in flight: every write the server took is answered and on disk, the connection is closed, exit 0', async () => {
    const disk = join(dir, 'term', 'v.img');
    const d = await daemon('term', { nbd: { shutdownGrace: '10s' }, volumes: [{ name: 'v', mode: 'raw', size: '64MiB', disk }] });
    const c = await RawClient.connect({ port: d.port, host: d.host });
    await c.start();
    await c.go('v');
    const N = 48;
    const block = (i: number): Buffer => Buffer.alloc(MiB, (i % 250) + 1);
    const reqs = Array.from({ length: N }, (_, i) => RawClient.request(CMD.WRITE, { flags: 1 /* FUA */, cookie: BigInt(i + 1), offset: i * MiB, data: block(i) }));
    c.write(Buffer.concat(reqs));
    // As soon as the first reply arrives the server is busy with the rest: signal it.
    const replies: Array<{ error: number; cookie: bigint }> = [await c.simpleReply(30_000)];
    d.process.kill('SIGTERM');
    for (let i = 1; i < N; i++) {
      try {
        replies.push(await c.simpleReply(30_000));
      } catch {
        break; // server closed: requests it never took are not answered
      }
    }
    expect(await c.closedWithin(15_000), 'server did not close the connection after answering').toBe(true);
    // Wait for the exit (a second SIGTERM would mean "exit now", with code 1).
    const code = await new Promise<number | null>((res) => {
      if (d.process.exitCode !== null || d.process.signalCode !== null) res(d.process.exitCode);
      else d.process.once('exit', (c) => res(c));
    });
    expect(code).toBe(0);
    const log = d.output();
    expect(log).toMatch(/signal received; shutting down/);
    // Every reply is a success; the daemon's own count of requests taken equals the replies sent.
    expect(replies.every((r) => r.error === 0)).toBe(true);
    const closed = log.split('\n').find((l) => l.includes('"msg":"connection closed"'));
    expect(closed, log.slice(-3000)).toBeDefined();
    const stats = JSON.parse(closed!) as { requests: number; errors: number };
    expect(stats.errors).toBe(0);
    expect(replies.length).toBe(stats.requests);
    expect(replies.length).toBeGreaterThanOrEqual(1);
    // And they are on disk.
    const data = readFileSync(disk);
    for (const r of replies) {
      const i = Number(r.cookie) - 1;
      expect(data.subarray(i * MiB, (i + 1) * MiB).equals(block(i)), `block ${i}`).toBe(true);
    }
    c.destroy();
  });

  it('with idle clients (handshake left half-closed, handshake idle, transmission idle) the daemon exits within the shutdown grace', async () => {
    const d = await daemon('idle', {
      nbd: { handshakeTimeout: '60s', shutdownGrace: '3s' },
      volumes: [{ name: 'v', mode: 'raw', size: '8MiB', disk: join(dir, 'idle', 'v.img') }],
    });
    // 1. A client that asked one option and closed its socket cleanly (FIN).
    const gone = await RawClient.connect({ port: d.port, host: d.host });
    await gone.start();
    expect((await gone.ask(OPT.LIST)).length).toBe(2);
    gone.socket.end();
    // 2. A client idling mid-handshake.
    const idle = await RawClient.connect({ port: d.port, host: d.host });
    await idle.start();
    // 3. A client idling in transmission.
    const tx = await RawClient.connect({ port: d.port, host: d.host });
    await tx.start();
    await tx.go('v');
    // The server has the transmission client registered before the signal.
    expect(await waitFor(() => d.output().includes('"msg":"transmission started"'), 10_000)).toBe(true);
    d.process.kill('SIGTERM');
    // Bounded well below handshakeTimeout (60 s): the idle handshakes must not hold the exit.
    const exited = await waitFor(() => d.process.exitCode !== null || d.process.signalCode !== null, 30_000, 50);
    for (const c of [gone, idle, tx]) c.destroy();
    expect(exited, `daemon still running after SIGTERM with idle clients:\n${d.output().split('\n').slice(-12).join('\n')}`).toBe(true);
    expect(d.process.exitCode).toBe(0);
  });

  it('a client that closes cleanly during the handshake is forgotten at once (not at handshakeTimeout)', async () => {
    const d = await daemon('fin', {
      nbd: { handshakeTimeout: '60s' },
      volumes: [{ name: 'v', mode: 'raw', size: '8MiB', disk: join(dir, 'fin', 'v.img') }],
    });
    const c = await RawClient.connect({ port: d.port, host: d.host });
    await c.start();
    expect((await c.ask(OPT.LIST)).length).toBe(2);
    c.socket.end(); // FIN, as a client process exiting after NBD_OPT_LIST does
    // The server should close its side promptly.
    expect(await c.closedWithin(5000), 'server kept a half-closed handshake connection open').toBe(true);
    const forgotten = await waitFor(() => hasLogRecord(d.output(), { msg: 'closed during handshake', component: 'nbd', conn: 1 }), 5000);
    expect(forgotten).toBe(true);
  });
});
