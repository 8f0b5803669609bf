// Runs a shell script inside a throwaway qemu VM whose Linux kernel NBD
// client (nbd.ko + nbd-client) attaches an export served on this host's
// loopback as /dev/nbd0. A thin wrapper over run-guest.sh (beside this file,
// usable by hand too; see README.md here).
//
// States of one run: building the initramfs (cached) -> booting (qemu's
// chardev forward already holds one connection to the server, idle) -> guest
// script -> GUEST-EXIT=<n> on the console -> power-off. Invariants: every run
// is time-bounded twice (qemu under `timeout` in run-guest.sh, and a hard kill
// of the whole process group here), and the guest reaches nothing on the host
// but 127.0.0.1:port.
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { atFileEnd, tempDir } from '../cleanup.js';
import { isCI } from '../prereq.js';
import { delimiter, join, resolve } from 'node:path';

export const vmHarnessDir = import.meta.dirname;
export const runGuestScript = join(vmHarnessDir, 'run-guest.sh');

export interface RunGuestOptions {
  /** TCP port of the NBD server on 127.0.0.1 (must already listen). */
  port: number;
  exportName: string;
  /** Path of the guest script (busybox sh). Give this or `scriptText`. */
  script?: string;
  /** Guest script source, written to a temp file. */
  scriptText?: string;
  /** Arguments of the guest script. */
  args?: string[];
  /** Whole VM, boot included (default 180 000 ms). */
  timeoutMs?: number;
  /**
   * How qemu reaches the server (see run-guest.sh). 'chardev' (default): one
   * connection per boot, opened when qemu starts and idle during boot.
   * 'relay': one per guest connection (needs socat).
   */
  forward?: 'chardev' | 'relay';
  /** Extra BLOCKGATE_VM_* settings (see run-guest.sh). */
  env?: Record<string, string>;
  /** Called with each console chunk as it arrives. */
  onConsole?: (chunk: string) => void;
}

export interface GuestResult {
  /**
   * The guest script's exit status; 124: VM timed out; 125: no GUEST-EXIT
   * line; 2: harness setup error (see `log`).
   */
  exitCode: number;
  /** The serial console (kernel messages and the script's output). */
  console: string;
  /** The harness's own messages (accelerator, timings, errors). */
  log: string;
  /** 'kvm' or 'tcg', when the harness got that far. */
  accel: string | undefined;
  /** Seconds from kernel start to /init (the guest's own clock). */
  bootSeconds: number | undefined;
  wallMs: number;
}

const sbinPath = ['/usr/local/sbin', '/usr/sbin', '/sbin'];

function onPath(cmd: string): boolean {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), ...sbinPath];
  return dirs.some((d) => {
    try { accessSync(join(d, cmd), constants.X_OK); return true; } catch { return false; }
  });
}

/**
 * What this host lacks to run a guest (empty when nothing): commands, the
 * static busybox, and a /boot/vmlinuz-* kernel (linux-image-amd64).
 * scripts/install-deps.sh installs all of them.
 */
export function missingVmPrerequisites(extra: string[] = []): string[] {
  const missing = ['qemu-system-x86_64', 'nbd-client', 'mke2fs', 'e2fsck', 'modprobe', 'modinfo', 'cpio', 'gzip', 'ldd', 'timeout', ...extra]
    .filter((c) => !onPath(c));
  if (!existsSync('/bin/busybox')) missing.push('/bin/busybox (busybox-static)');
  let kernels: string[] = [];
  try { kernels = readdirSync('/boot').filter((f) => f.startsWith('vmlinuz-')); } catch { /* no /boot */ }
  if (kernels.length === 0) missing.push('/boot/vmlinuz-* (linux-image-amd64)');
  return missing;
}

/**
 * For a test file's top level: when prerequisites are missing, returns a
 * reason to skip, except under CI (CI=true), where it throws instead, so a
 * missing peer fails the run rather than hiding as a skip.
 */
export function vmSkipReason(extra: string[] = []): string | undefined {
  const missing = missingVmPrerequisites(extra);
  if (missing.length === 0) return undefined;
  const msg = `kernel-client VM tests need: ${missing.join(', ')} (run scripts/install-deps.sh as root)`;
  if (isCI()) throw new Error(msg);
  return msg;
}

export { isCI };

/** Builds (or reuses) the cached guest initramfs; returns its path. */
export function buildInitramfs(env: Record<string, string> = {}): string {
  const r = spawnSync('bash', [join(vmHarnessDir, 'build-initramfs.sh')], {
    env: { ...process.env, PATH: withSbin(), ...env }, encoding: 'utf8', timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`build-initramfs.sh failed (${r.status ?? r.signal}):\n${r.stderr}`);
  return r.stdout.trim();
}

function withSbin(): string {
  const path = (process.env.PATH ?? '').split(delimiter);
  return [...path, ...sbinPath.filter((d) => !path.includes(d))].join(delimiter);
}

/** Boots a VM, runs the guest script against 127.0.0.1:port, and resolves when it powers off. */
export async function runGuest(opts: RunGuestOptions): Promise<GuestResult> {
  const timeoutMs = opts.timeoutMs ?? 180_000;
  const tmp = tempDir('blockgate-vm-');
  let script = opts.script;
  if (script === undefined) {
    if (opts.scriptText === undefined) throw new Error('runGuest: give script or scriptText');
    script = join(tmp, 'guest.sh');
    writeFileSync(script, opts.scriptText);
  }
  // The console as run-guest.sh saved it is authoritative; the stream on
  // stdout is for watching.
  const consoleLog = join(tmp, 'console.log');
  const env: Record<string, string | undefined> = {
    ...process.env,
    PATH: withSbin(),
    BLOCKGATE_VM_TIMEOUT: String(Math.max(10, Math.ceil(timeoutMs / 1000))),
    BLOCKGATE_VM_FWD: opts.forward ?? 'chardev',
    ...opts.env,
    BLOCKGATE_VM_LOG: consoleLog,
  };
  const started = Date.now();
  const child = spawn('bash', [runGuestScript, String(opts.port), opts.exportName, resolve(script), ...(opts.args ?? [])], {
    env, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  let consoleOut = '';
  let log = '';
  const verbose = process.env.BLOCKGATE_VM_VERBOSE === '1';
  child.stdout.on('data', (b: Buffer) => {
    const s = b.toString();
    consoleOut += s;
    opts.onConsole?.(s);
    if (verbose) process.stderr.write(s);
  });
  child.stderr.on('data', (b: Buffer) => {
    log += b.toString();
    if (verbose) process.stderr.write(b);
  });
  // run-guest.sh kills qemu itself at the timeout (+10 s for a stuck qemu);
  // this is the backstop for anything else in the group.
  const killGroup = (): void => { try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ } };
  const forget = atFileEnd(killGroup); // a test that times out still leaves no qemu behind
  const hardKill = setTimeout(() => { log += `vm: harness hard-killed after ${timeoutMs + 30_000} ms\n`; killGroup(); }, timeoutMs + 30_000);
  const code = await new Promise<number>((res) => {
    child.once('close', (c, sig) => res(c ?? (sig ? 128 + 9 : 1)));
    child.once('error', (e) => { log += `vm: spawn failed: ${e.message}\n`; res(2); });
  });
  clearTimeout(hardKill);
  killGroup();
  forget();
  try { consoleOut = readFileSync(consoleLog, 'utf8'); } catch { /* qemu never started: keep the stream */ }
  rmSync(tmp, { recursive: true, force: true });
  const status = /^GUEST-EXIT=(\d+)$/m.exec(consoleOut.replace(/\r/g, ''));
  const booted = /^GUEST-BOOTED uptime=([\d.]+)/m.exec(consoleOut);
  return {
    // run-guest.sh's code is authoritative (124/125/2 are its own); the
    // console line is a cross-check for callers.
    exitCode: code === 0 && !status ? 125 : code,
    console: consoleOut.replace(/\r/g, ''),
    log,
    accel: /accel (kvm|tcg)/.exec(log)?.[1],
    bootSeconds: booted ? Number(booted[1]) : undefined,
    wallMs: Date.now() - started,
  };
}

/** Lines of the console that start with `tag` (tag removed), e.g. 'SHA256 '. */
export function taggedLines(consoleText: string, tag: string): string[] {
  return consoleText.split('\n').filter((l) => l.startsWith(tag)).map((l) => l.slice(tag.length));
}

/** A short, readable failure report: the harness log and the console's tail. */
export function describeRun(r: GuestResult, tailLines = 60): string {
  const tail = r.console.split('\n').slice(-tailLines).join('\n');
  return `guest exit ${r.exitCode} after ${r.wallMs} ms (accel ${r.accel ?? '?'})\n--- harness log\n${r.log}--- console (last ${tailLines} lines)\n${tail}`;
}

/** `sha256sum` manifest lines ("hash  name") -> Map(name -> hash). */
export function parseManifest(lines: string[]): Map<string, string> {
  const m = new Map<string, string>();
  for (const l of lines) {
    const match = /^([0-9a-f]{64})  (.+)$/.exec(l);
    if (match) m.set(match[2]!, match[1]!);
  }
  return m;
}
