// Temp dirs for store tests: all under one parent per test file, removed after the file.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { tempDir } from '../harness/cleanup.js';

export function tempDirs(prefix: string): (name?: string) => string {
  const parent = tempDir(prefix);
  afterAll(() => rmSync(parent, { recursive: true, force: true }));
  return (name = 'd') => mkdtempSync(join(parent, name + '-'));
}
