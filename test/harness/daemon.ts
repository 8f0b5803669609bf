// Starts a real blockgate daemon (bin/blockgate serve) as a child process for
// tests, on a port chosen by the kernel, and stops or kills it. The daemon
// reports each bound address in a structured log record {"msg":"listening",
// "address":"127.0.0.1:PORT"} or {"msg":"listening","unix":PATH}, then
// {"msg":"ready"} once every export is open.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { stringify } from 'yaml';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const blockgateBin = join(repoRoot, 'bin', 'blockgate');

export interface DaemonHandle {
  readonly host: string;
  /** TCP port, when a TCP listener was configured. */
  readonly port: number;
  /** Unix socket path, when one was configured. */
  readonly unixSocket: string | undefined;
  readonly dir: string;
  readonly configPath: string;
  /** The daemon's admin API socket. */
  readonly adminSocket: string;
  readonly process: ChildProcess;
  /** nbd://127.0.0.1:PORT/NAME (or nbd+unix:///NAME?socket=... when only unix). */
  uri(exportName: string): string;
  /** Everything the daemon wrote on stderr/stdout so far. */
  output(): string;
  /** SIGTERM and wait: resolves the exit code (null if killed by a signal). */
  stop(): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

export interface StartDaemonOptions {
  /** Working directory for config and relative paths (default: a new temp dir). */
  dir?: string;
  env?: Record<string, string>;
  /** Extra CLI args after `serve --config FILE`. */
  args?: string[];
  /** How long to wait for readiness (ms). */
  timeoutMs?: number;
}

export function tempDir(prefix = 'blockgate-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * Writes `config` (a plain object, YAML-serialised) and starts the daemon.
 * When `config.listen` is absent a TCP listener on 127.0.0.1:0 is added.
 */
export async function startDaemon(config: Record<string, unknown>, options: StartDaemonOptions = {}): Promise<DaemonHandle> {
  const dir = options.dir ?? tempDir();
  const cfg = { log: { level: 'debug' }, listen: [{ tcp: '127.0.0.1:0' }], admin: { socket: join(dir, 'admin.sock') }, ...config };
  const configPath = join(dir, `config-${Date.now()}-${Math.random().toString(36).slice(2, 8)}.yaml`);
  writeFileSync(configPath, stringify(cfg));
  const child = spawn(process.execPath, [blockgateBin, 'serve', '--config', configPath, ...(options.args ?? [])], {
    cwd: dir,
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let port = 0;
  let host = '127.0.0.1';
  let unixSocket: string | undefined;
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));

  const ready = new Promise<void>((res, rej) => {
    const onData = logRecordReader((text) => { out += text; }, (rec) => {
      if (rec.msg === 'listening') {
        if (typeof rec.address === 'string') {
          const i = rec.address.lastIndexOf(':');
          host = rec.address.slice(0, i).replace(/^\[|\]$/g, '');
          port ||= Number(rec.address.slice(i + 1));
        }
        if (typeof rec.unix === 'string') unixSocket ??= rec.unix;
      }
      if (rec.msg === 'ready') res();
    });
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => rej(new Error(`blockgate exited (${code}) before ready:\n${out}`)));
    setTimeout(() => rej(new Error(`blockgate not ready after ${options.timeoutMs ?? 30000} ms:\n${out}`)), options.timeoutMs ?? 30000).unref();
  });
  try {
    await ready;
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    host, port, unixSocket, dir, configPath, process: child,
    adminSocket: (cfg.admin as { socket: string }).socket,
    uri: (name) => port ? `nbd://${host}:${port}/${name}` : `nbd+unix:///${name}?socket=${unixSocket}`,
    output: () => out,
    stop: async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM'); return exited; },
    kill: async () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); await exited; },
  };
}

/**
 * A 'data' handler for a blockgate process's output: passes every chunk to
 * `onText` and each complete line that parses as JSON (a structured log
 * record) to `onRecord`.
 */
export function logRecordReader(onText: (text: string) => void, onRecord: (rec: Record<string, unknown>) => void): (chunk: Buffer) => void {
  let pending = '';
  return (chunk) => {
    const text = chunk.toString();
    onText(text);
    pending += text;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      let rec: Record<string, unknown>;
      try { rec = JSON.parse(line) as Record<string, unknown>; } catch { continue; }
      onRecord(rec);
    }
  };
}
