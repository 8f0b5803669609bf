// Real-process helpers for the control-plane tests: control servers
// (`blockgate control serve`), gateway agents (dist/control-plane/agent/run-agent.js) and
// the CLI, all on 127.0.0.1 with kernel-chosen ports and temp dirs. Every
// wait is bounded. Processes log one JSON object per line on stderr; the
// helpers parse those records ("listening", "ready", "activation key issued").
import type { ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { blockgateBin, repoRoot, tempDir } from '../harness/daemon.js';
import { logRecordLines, runBlockgate, start } from '../harness/process.js';

export { tempDir };

const runAgentJs = join(repoRoot, 'dist', 'control-plane', 'agent', 'run-agent.js');

/** The real CLI: the tests drive bin/blockgate, never a stand-in. */
export function cliEntry(): string {
  return blockgateBin;
}

/** Fails loudly when dist/ is older than the sources these tests exercise (run `npm run build`). */
export function assertBuilt(): void {
  const pairs: Array<[string, string]> = [];
  for (const d of ['control-plane', 'control-plane/server', 'control-plane/agent']) {
    for (const f of readdirSync(join(repoRoot, 'src', d))) {
      if (f.endsWith('.ts')) pairs.push([join(repoRoot, 'src', d, f), join(repoRoot, 'dist', d, f.replace(/\.ts$/, '.js'))]);
    }
  }
  pairs.push([join(repoRoot, 'src', 'cli', 'control-commands.ts'), join(repoRoot, 'dist', 'cli', 'control-commands.js')]);
  for (const [src, out] of pairs) {
    if (!existsSync(out) || statSync(out).mtimeMs + 1000 < statSync(src).mtimeMs) {
      throw new Error(`${out} is missing or older than ${src}: run 'npm run build' first`);
    }
  }
}

export interface CliResult { code: number | null; stdout: string; stderr: string }

export async function cli(args: string[], options: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<CliResult> {
  const r = await runBlockgate(args, { env: { BLOCKGATE_TOKEN: '', BLOCKGATE_CONTROL_URL: '', ...options.env }, timeoutMs: options.timeoutMs ?? 60_000 });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

/** Runs the CLI with --json and parses stdout; throws with the CLI's stderr when it fails. */
export async function cliJson<T>(args: string[]): Promise<T> {
  const r = await cli([...args, '--json']);
  if (r.code !== 0) throw new Error(`blockgate ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface LoggedProcess {
  readonly process: ChildProcess;
  output(): string;
  records(): Array<Record<string, unknown>>;
  /** Waits (bounded) for a log record matching `pred`, counting only records after index `from`. */
  waitFor(pred: (r: Record<string, unknown>) => boolean, timeoutMs?: number, from?: number): Promise<Record<string, unknown>>;
  /** SIGTERM (or `signal`) and wait for exit. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

function spawnLogged(args: string[], cwd: string): LoggedProcess {
  const p = start(process.execPath, args, { cwd });
  const child = p.process;
  const recs: Array<Record<string, unknown>> = [];
  const listeners = new Set<() => void>();
  const readRecords = logRecordLines((rec) => recs.push(rec));
  p.onData((text) => {
    readRecords(text);
    for (const l of listeners) l();
  });
  void p.exited.then(() => { for (const l of listeners) l(); }, () => undefined);
  return {
    process: child,
    output: () => p.output(),
    records: () => recs,
    waitFor: (pred, timeoutMs = 30_000, from = 0) => new Promise((resolve, reject) => {
      const check = (): void => {
        const r = recs.slice(from).find(pred);
        if (r) { done(); resolve(r); return; }
        if (!p.running()) { done(); reject(new Error(`process exited (${child.exitCode ?? child.signalCode}) while waiting:\n${p.output()}`)); }
      };
      const timer = setTimeout(() => { done(); reject(new Error(`no matching log record within ${timeoutMs} ms:\n${p.output()}`)); }, timeoutMs);
      const done = (): void => { clearTimeout(timer); listeners.delete(check); };
      listeners.add(check);
      check();
    }),
    stop: (signal = 'SIGTERM') => p.stop(signal, 15_000),
  };
}

export interface ControlHandle extends LoggedProcess {
  readonly url: string;
  readonly port: number;
  readonly dir: string;
  readonly configPath: string;
}

export const TOKEN = 'bgt_test-token-for-account-acme-0123456789';
export const OTHER_TOKEN = 'bgt_test-token-for-account-zeta-0123456789';
export const PEER_SECRET = 'peer-secret-for-tests-0123456789';

/** Config with two accounts (acme: TOKEN as a hash; zeta: OTHER_TOKEN in plain) and a registry in dir/data. */
export function controlConfig(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    log: { level: 'debug' },
    listen: '127.0.0.1:0',
    dataDir: 'data',
    peerSecret: PEER_SECRET,
    longPollHold: '20s',
    accounts: [
      { name: 'acme', tokenHashes: [sha256(TOKEN)], objectStore: { endpoint: 'https://s3.example.test', bucket: 'acme-bucket', region: 'eu-1' } },
      { name: 'zeta', tokens: [OTHER_TOKEN] },
    ],
    ...overrides,
  };
}

function sha256(s: string): string {
  // Same as control/protocol hashToken, computed independently here.
  return createHash('sha256').update(s).digest('hex');
}

/** Starts `blockgate control serve` with `config` (YAML) in `dir`; resolves once it logged "ready". */
export async function startControl(config: Record<string, unknown>, dir = tempDir('bg-control-'), name = 'control'): Promise<ControlHandle> {
  const configPath = join(dir, `${name}.yaml`);
  writeFileSync(configPath, stringify(config));
  const p = spawnLogged([cliEntry(), 'control', 'serve', '--config', configPath], dir);
  const ready = await p.waitFor((r) => r.msg === 'ready', 30_000);
  const url = String(ready.url);
  return { ...p, url, port: Number(new URL(url).port), dir, configPath };
}

export interface AgentHandle extends LoggedProcess {
  readonly activationAddress: string;
  readonly stateDir: string;
}

export async function startAgent(stateDir: string, controlUrl: string, extra: string[] = []): Promise<AgentHandle> {
  const p = spawnLogged([runAgentJs, '--state-dir', stateDir, '--control', controlUrl, '--listen', '127.0.0.1:0',
    '--poll-ms', '150', '--backoff-max-ms', '1000', '--log-level', 'debug', ...extra], stateDir);
  const ready = await p.waitFor((r) => r.msg === 'ready', 30_000);
  return { ...p, activationAddress: String(ready.activationAddress), stateDir };
}

/** Starts an agent and activates it through the CLI under `name`; resolves once the agent is activated and polling. */
export async function activatedAgent(control: ControlHandle, name: string, extra: string[] = [], controlUrl = control.url): Promise<AgentHandle> {
  const agent = await startAgent(tempDir('bg-gw-'), controlUrl, extra);
  await agent.waitFor((r) => r.msg === 'activation key issued');
  const r = await cli(['activate', '--control', control.url, '--gateway', agent.activationAddress, '--name', name, '--token', TOKEN]);
  if (r.code !== 0) throw new Error(`activate failed: ${r.stderr}`);
  await agent.waitFor((rec) => rec.msg === 'gateway activated');
  await agent.waitFor((rec) => rec.msg === 'command channel connected');
  return agent;
}

export async function waitUntil<T>(fn: () => Promise<T | undefined | false>, timeoutMs: number, what: string, intervalMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) { last = err; }
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export function fileMode(path: string): number {
  return statSync(path).mode & 0o777;
}
