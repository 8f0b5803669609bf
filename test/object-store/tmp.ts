// Temp dirs for store tests: all under one parent per test file, removed after the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

export function tempDirs(prefix: string): (name?: string) => string {
  const parent = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(parent, { recursive: true, force: true }));
  return (name = 'd') => mkdtempSync(join(parent, name + '-'));
}
