// Builds dist/ once per test process (the CLI and child-process tests run the
// real compiled code).
import { execFileSync } from 'node:child_process';
import { resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '..', '..');
let built = false;

export function ensureBuilt(): void {
  if (built) return;
  execFileSync(process.execPath, [resolve(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: repoRoot, stdio: 'inherit' });
  built = true;
}
