// What a test file leaves outside itself — temp dirs and child processes — is
// registered here and released when the file ends (file-end.ts, a vitest
// setup file, calls releaseAll from an afterAll that runs after the file's
// own hooks): processes are killed first, then the dirs are removed.
// Invariant: every temp dir a test makes is under os.tmpdir() (scripts/test.sh
// points TMPDIR at a private dir and counts whatever is left there).
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dirs = new Set<string>();
const children = new Set<ChildProcess>();
const releasers = new Set<() => Promise<void> | void>();

/** A fresh dir under os.tmpdir(), removed when the test file ends (removing it earlier is fine). */
export function tempDir(prefix = 'bg-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.add(dir);
  return dir;
}

/** Tracks a child process: killed (SIGKILL) when the test file ends if it is still running. */
export function trackChild(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  children.add(child);
  child.once('exit', () => children.delete(child));
}

/** Runs `fn` when the test file ends, before temp dirs are removed (e.g. umount, losetup -d). */
export function atFileEnd(fn: () => Promise<void> | void): () => void {
  releasers.add(fn);
  return () => releasers.delete(fn);
}

function running(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null;
}

/** Kills tracked children (and waits for their exit), runs atFileEnd callbacks, removes temp dirs. */
export async function releaseAll(): Promise<void> {
  const errors: unknown[] = [];
  await Promise.all([...children].map((c) => new Promise<void>((res) => {
    if (!running(c)) { res(); return; }
    c.once('exit', () => res());
    c.kill('SIGKILL');
  })));
  children.clear();
  for (const fn of [...releasers].reverse()) {
    try { await fn(); } catch (err) { errors.push(err); }
  }
  releasers.clear();
  for (const d of dirs) {
    try { rmSync(d, { recursive: true, force: true, maxRetries: 3 }); } catch (err) { errors.push(err); }
  }
  dirs.clear();
  if (errors.length > 0) throw new AggregateError(errors, `test cleanup failed: ${errors.map(String).join('; ')}`);
}
