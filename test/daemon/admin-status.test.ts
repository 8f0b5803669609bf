// The daemon's admin API, `blockgate status` and Prometheus metrics, driven
// through the real binary and a real NBD client.
import { execFile } from 'node:child_process';
import { chmodSync, rmSync, statSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { blockgateBin, startDaemon, tempDir, type DaemonHandle } from '../harness/daemon.js';
import { freePort } from '../harness/free-port.js';

const run = promisify(execFile);


describe('admin API, status and metrics', () => {
  let d: DaemonHandle;
  let dir: string;
  let metricsPort: number;

  beforeAll(async () => {
    dir = tempDir();
    chmodSync(dir, 0o755); // let another user reach the socket file, so only its own mode protects it
    metricsPort = await freePort();
    d = await startDaemon({
      metrics: { listen: `127.0.0.1:${metricsPort}` },
      volumes: [
        { name: 'alpha', mode: 'raw', size: '16MiB', disk: `${dir}/alpha.img`, description: 'first' },
        { name: 'beta', mode: 'raw', size: '8MiB', disk: `${dir}/beta.img`, readOnly: false },
      ],
    }, { dir });
    // Real traffic: 1 MiB written to alpha through nbdcopy.
    await run('bash', ['-c', `head -c 1048576 /dev/urandom | nbdcopy - '${d.uri('alpha')}'`]);
  });

  afterAll(async () => {
    await d?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('creates the admin socket root-only (mode 0600)', () => {
    const st = statSync(d.adminSocket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('reports volumes and traffic with `status --json`', async () => {
    const { stdout } = await run(process.execPath, [blockgateBin, 'status', '--json', '--admin-socket', d.adminSocket]);
    const s = JSON.parse(stdout) as { volumes: Array<{ name: string; size: number; bytesWritten: number; requests: { write: number } }>; listeners: string[] };
    expect(s.listeners).toContain(`127.0.0.1:${d.port}`);
    const alpha = s.volumes.find((v) => v.name === 'alpha')!;
    expect(alpha.size).toBe(16 * 1024 * 1024);
    expect(alpha.bytesWritten).toBe(1024 * 1024);
    expect(alpha.requests.write).toBeGreaterThan(0);
    expect(s.volumes.find((v) => v.name === 'beta')!.bytesWritten).toBe(0);
  });

  it('prints a human summary, finding the socket from --config', async () => {
    const { stdout } = await run(process.execPath, [blockgateBin, 'status', '--config', d.configPath]);
    expect(stdout).toMatch(/^blockgate \d+\.\d+\.\d+ \(pid \d+\), up /);
    expect(stdout).toMatch(/alpha\s+raw\s+16\.0 MiB\s+0\s+\d+\s+0 B\s+1\.00 MiB\s+0/);
  });

  it('exposes Prometheus metrics', async () => {
    const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('# TYPE blockgate_nbd_written_bytes_total counter');
    expect(text).toContain('blockgate_nbd_written_bytes_total{volume="alpha"} 1048576');
    expect(text).toContain('blockgate_volume_size_bytes{volume="beta"} 8388608');
    expect((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status).toBe(404);
  });

  it('answers unknown endpoints with a JSON error', async () => {
    const { adminRequest } = await import('../../src/daemon/admin-api.js');
    await expect(adminRequest(d.adminSocket, 'GET', '/v1/nope')).rejects.toThrow(/no such endpoint/);
    await expect(adminRequest(d.adminSocket, 'POST', '/v1/status')).rejects.toThrow(/not allowed/);
  });

  it('refuses a non-root user at the socket', async () => {
    expect(process.getuid?.()).toBe(0); // the suite runs as root (CI and the README's commands)
    const err = await run('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, blockgateBin, 'status', '--admin-socket', d.adminSocket])
      .then(() => undefined, (e: { code: number; stderr: string }) => e);
    expect(err).toBeDefined();
    expect(err!.code).toBe(1);
    expect(err!.stderr).toMatch(/EACCES|permission denied/i);
  });

  it('fails clearly when no daemon is running', async () => {
    const err = await run(process.execPath, [blockgateBin, 'status', '--admin-socket', '/nonexistent/admin.sock'])
      .then(() => undefined, (e: { code: number; stderr: string }) => e);
    expect(err!.code).toBe(1);
    expect(err!.stderr).toContain('is the daemon running?');
    expect(err!.stderr).toContain('ERR_DAEMON_UNAVAILABLE');
  });
});
