// Starts a real blockgate daemon (bin/blockgate serve) as a child process for
// tests, on a port chosen by the kernel, and stops or kills it. The daemon
// reports each bound address in a structured log record {"msg":"listening",
// "address":"127.0.0.1:PORT"} or {"msg":"listening","unix":PATH}, then
// {"msg":"ready"} once every export is open.
import type { ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { tempDir as registeredTempDir } from './cleanup.js';
import { blockgateBin, logRecordLines, repoRoot, startBlockgate } from './process.js';

export { blockgateBin, repoRoot };

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

/** A temp dir under os.tmpdir(), removed when the test file ends (test/harness/cleanup.ts). */
export function tempDir(prefix = 'blockgate-test-'): string {
  return registeredTempDir(prefix);
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
  const proc = startBlockgate(['serve', '--config', configPath, ...(options.args ?? [])], { cwd: dir, ...(options.env ? { env: options.env } : {}) });
  const child = proc.process;
  let port = 0;
  let host = '127.0.0.1';
  let unixSocket: string | undefined;
  const timeoutMs = options.timeoutMs ?? 30_000;
  const ready = new Promise<void>((res, rej) => {
    const stopListening = proc.onData(logRecordLines((rec) => {
      if (rec.msg === 'listening') {
        if (typeof rec.address === 'string') {
          const i = rec.address.lastIndexOf(':');
          host = rec.address.slice(0, i).replace(/^\[|\]$/g, '');
          port ||= Number(rec.address.slice(i + 1));
        }
        if (typeof rec.unix === 'string') unixSocket ??= rec.unix;
      }
      if (rec.msg === 'ready') { stopListening(); res(); }
    }));
    void proc.exited.then((r) => rej(new Error(`blockgate exited (${r.code ?? r.signal}) before ready:\n${proc.output()}`)), rej);
    setTimeout(() => rej(new Error(`blockgate not ready after ${timeoutMs} ms:\n${proc.output()}`)), timeoutMs).unref();
  });
  try {
    await ready;
  } catch (err) {
    await proc.kill();
    throw err;
  }
  return {
    host, port, unixSocket, dir, configPath, process: child,
    adminSocket: (cfg.admin as { socket: string }).socket,
    uri: (name) => port ? `nbd://${host}:${port}/${name}` : `nbd+unix:///${name}?socket=${unixSocket}`,
    output: () => proc.output(),
    stop: async () => { if (proc.running()) child.kill('SIGTERM'); return (await proc.exited).code; },
    kill: () => proc.kill(),
  };
}

/**
 * The structured log records (JSON lines) in a process's output, in order.
 * Match records by their fields, never by the text of a line: the field order
 * of a line is the logger's business.
 */
export function logRecords(output: string): Array<Record<string, unknown>> {
  const out: Array<Record<string, unknown>> = [];
  for (const line of output.split('\n')) {
    if (!line.startsWith('{')) continue;
    try { out.push(JSON.parse(line) as Record<string, unknown>); } catch { /* a line cut by the pipe, or not a record */ }
  }
  return out;
}

/** Whether some record in `output` has every field of `fields` with that value. */
export function hasLogRecord(output: string, fields: Record<string, unknown>): boolean {
  return logRecords(output).some((r) => Object.entries(fields).every(([k, v]) => r[k] === v));
}

/**
 * A 'data' handler for a blockgate process's output: passes every chunk to
 * `onText` and each complete line that parses as JSON (a structured log
 * record) to `onRecord`.
 */
export function logRecordReader(onText: (text: string) => void, onRecord: (rec: Record<string, unknown>) => void): (chunk: Buffer) => void {
  const lines = logRecordLines(onRecord);
  return (chunk) => {
    const text = chunk.toString();
    onText(text);
    lines(text);
  };
}
