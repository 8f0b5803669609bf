// Builds dist/ once per test process (the CLI and child-process tests run the
// real compiled code). Several engineers share the checkout: a type error in
// someone else's work-in-progress file must not block these tests, so tsc's
// exit status is reported but only the files these tests need are required
// (tsc emits despite type errors elsewhere).
import { spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
let built = false;

const NEEDED: Array<[string, string]> = [
  ['src/snapshots/snapshot-store.ts', 'dist/snapshots/snapshot-store.js'],
  ['src/snapshots/session.ts', 'dist/snapshots/session.js'],
  ['src/snapshots/transfer.ts', 'dist/snapshots/transfer.js'],
  ['src/snapshots/gc.ts', 'dist/snapshots/gc.js'],
  ['src/cli/snapshot-commands.ts', 'dist/cli/snapshot-commands.js'],
  ['src/object-store/open.ts', 'dist/object-store/open.js'],
  ['src/object-store/fault.ts', 'dist/object-store/fault.js'],
];

export function ensureBuilt(): void {
  if (built) return;
  const started = Date.now();
  const r = spawnSync(process.execPath, [resolve(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: repoRoot, encoding: 'utf8' });
  if (r.status !== 0) process.stderr.write(`note: tsc reported errors (emitted anyway):\n${r.stdout}${r.stderr}`);
  for (const [src, out] of NEEDED) {
    const o = resolve(repoRoot, out);
    if (!existsSync(o) || statSync(o).mtimeMs < statSync(resolve(repoRoot, src)).mtimeMs || statSync(o).mtimeMs < started - 1000) {
      throw new Error(`build did not produce an up-to-date ${out}:\n${r.stdout}${r.stderr}`);
    }
  }
  built = true;
}
