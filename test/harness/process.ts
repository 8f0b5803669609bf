// The one way tests run child processes: spawn with captured output, a bounded
// wait for exit, and no orphans (every child is tracked by cleanup.ts and
// SIGKILLed when the test file ends). blockgate itself always runs as the
// built CLI, bin/blockgate (dist/ plus the native addon), never through a
// bundler or a TypeScript loader.
import { spawn, type ChildProcess } from 'node:child_process';
import { join, resolve } from 'node:path';
import { trackChild } from './cleanup.js';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
export const blockgateBin = join(repoRoot, 'bin', 'blockgate');

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** SIGKILL after this long (default 90 s); the result then has signal 'SIGKILL'. */
  timeoutMs?: number;
  /** Added to (and overriding) process.env. */
  env?: Record<string, string>;
  /** Written to stdin, then stdin is closed (without it stdin is /dev/null, unless openStdin). */
  input?: string;
  /** start() only: leave stdin open as a pipe (child.process.stdin) for the test to write to. */
  openStdin?: boolean;
  cwd?: string;
}

export interface Child {
  readonly process: ChildProcess;
  /** stdout and stderr interleaved as received. */
  output(): string;
  stdout(): string;
  stderr(): string;
  /** Called with each chunk (either stream) after it was appended to output(). */
  onData(listener: (chunk: string) => void): () => void;
  /** Resolves when the process has exited and its streams are closed. */
  readonly exited: Promise<RunResult>;
  running(): boolean;
  /** Sends `signal` (default SIGTERM), SIGKILL after graceMs (default 15 s); resolves the exit code (null if killed by a signal). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  /** SIGKILL and wait. */
  kill(): Promise<void>;
}

/** Starts `cmd args` with stdout and stderr captured; the child dies with the test file at the latest. */
export function start(cmd: string, args: readonly string[], options: Omit<RunOptions, 'timeoutMs'> = {}): Child {
  const child = spawn(cmd, args, {
    env: { ...process.env, ...options.env },
    stdio: [options.input !== undefined || options.openStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    ...(options.cwd ? { cwd: options.cwd } : {}),
  });
  trackChild(child);
  let out = '';
  let stdout = '';
  let stderr = '';
  const listeners = new Set<(chunk: string) => void>();
  const on = (which: 'out' | 'err') => (c: Buffer): void => {
    const text = c.toString();
    out += text;
    if (which === 'out') stdout += text; else stderr += text;
    for (const l of listeners) l(text);
  };
  child.stdout!.on('data', on('out'));
  child.stderr!.on('data', on('err'));
  if (options.input !== undefined) child.stdin!.end(options.input);
  const exited = new Promise<RunResult>((res, rej) => {
    child.once('error', rej);
    child.once('close', (code, signal) => res({ code, signal, stdout, stderr }));
  });
  const running = (): boolean => child.exitCode === null && child.signalCode === null;
  return {
    process: child,
    output: () => out,
    stdout: () => stdout,
    stderr: () => stderr,
    onData: (l) => { listeners.add(l); return () => listeners.delete(l); },
    exited,
    running,
    stop: async (signal = 'SIGTERM', graceMs = 15_000) => {
      if (running()) child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try { return (await exited).code; } finally { clearTimeout(t); }
    },
    kill: async () => {
      if (running()) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs a command to completion (never throws for a non-zero exit; SIGKILLs it after timeoutMs). */
export async function run(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const c = start(cmd, args, options);
  const timer = setTimeout(() => c.process.kill('SIGKILL'), options.timeoutMs ?? 90_000);
  try { return await c.exited; } finally { clearTimeout(timer); }
}

/** Runs a command and throws (with its output) unless it exits 0. */
export async function runOk(cmd: string, args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  const r = await run(cmd, args, options);
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  }
  return r;
}

/** Runs the built CLI: bin/blockgate ARGS. */
export function runBlockgate(args: readonly string[], options: RunOptions = {}): Promise<RunResult> {
  return run(process.execPath, [blockgateBin, ...args], options);
}

/** Starts the built CLI (a long-running command such as `serve`). */
export function startBlockgate(args: readonly string[], options: Omit<RunOptions, 'timeoutMs'> = {}): Child {
  return start(process.execPath, [blockgateBin, ...args], options);
}

/**
 * A text listener for a blockgate process's output: passes each complete line
 * that parses as JSON (a structured log record) to `onRecord`.
 */
export function logRecordLines(onRecord: (rec: Record<string, unknown>) => void): (text: string) => void {
  let pending = '';
  return (text) => {
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
