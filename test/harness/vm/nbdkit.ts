// nbdkit on a free loopback port, as a reference NBD server for the VM
// harness's self-check (and as a peer to compare blockgate with). Readiness:
// nbdkit writes its pidfile only once it listens; a taken port makes it exit,
// and another port is tried.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { tempDir, trackChild } from '../cleanup.js';
import { join } from 'node:path';
import { freePort } from '../free-port.js';

export interface NbdkitHandle {
  readonly port: number;
  readonly process: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}


/** Starts `nbdkit -e EXPORT PLUGIN ARGS...` on 127.0.0.1. */
export async function startNbdkit(exportName: string, pluginArgs: string[]): Promise<NbdkitHandle> {
  const dir = tempDir('blockgate-nbdkit-');
  const pidfile = join(dir, 'nbdkit.pid');
  let lastOut = '';
  for (let attempt = 0; attempt < 10; attempt++) {
    const port = await freePort();
    rmSync(pidfile, { force: true });
    const child = spawn('nbdkit', ['-f', '--exit-with-parent', '-i', '127.0.0.1', '-p', String(port), '-P', pidfile, '-e', exportName, ...pluginArgs], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    trackChild(child);
    let out = '';
    child.stdout.on('data', (b: Buffer) => { out += b.toString(); });
    child.stderr.on('data', (b: Buffer) => { out += b.toString(); });
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    let spawnError: Error | undefined;
    child.once('error', (e) => { spawnError = e; });
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && child.exitCode === null && !spawnError) {
      if (existsSync(pidfile) && readFileSync(pidfile, 'utf8').trim() !== '') {
        return {
          port, process: child, output: () => out,
          stop: async () => {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
            rmSync(dir, { recursive: true, force: true });
          },
        };
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (spawnError) throw new Error(`nbdkit: ${spawnError.message}`);
    child.kill('SIGKILL');
    await exited;
    lastOut = out;
  }
  rmSync(dir, { recursive: true, force: true });
  throw new Error(`could not start nbdkit:\n${lastOut}`);
}
