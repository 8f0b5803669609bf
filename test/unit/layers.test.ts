// The layering rules, checked on the source: volumes/ never imports from
// daemon/ (the daemon owns admin routes, metrics and config parsing and
// calls the volume runtimes' typed operations), and nbd/ (the protocol)
// imports neither volumes/ nor daemon/. A simple scan of every import,
// export-from and dynamic import() specifier, resolved against the file.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const src = resolve(import.meta.dirname, '..', '..', 'src');

function tsFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []);
}

const SPECIFIER = /(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]|import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

/** Every relative module a file imports, as a path under src/ (e.g. "daemon/config.js"). */
function importsOf(file: string, text = readFileSync(file, 'utf8')): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (spec.startsWith('.')) out.push(relative(src, resolve(dirname(file), spec)));
  }
  return out;
}

function violations(layer: string, forbidden: string[]): string[] {
  return tsFiles(join(src, layer)).flatMap((f) =>
    importsOf(f).filter((m) => forbidden.some((x) => m === x || m.startsWith(`${x}/`))).map((m) => `${relative(src, f)} imports ${m}`));
}

describe('layers', () => {
  it('the scan sees static, type-only, re-export and dynamic imports', () => {
    const file = join(src, 'volumes', 'x.ts');
    const text = [
      "import type { A } from '../daemon/config.js';",
      "import {\n  B,\n  C,\n} from '../nbd/export.js';",
      "export { D } from './stored/runtime.js';",
      "const m = await import('../daemon/metrics.js');",
      "import '../util/side-effect.js';",
      "import { z } from 'zod';",
    ].join('\n');
    expect(importsOf(file, text)).toEqual(['daemon/config.js', 'nbd/export.js', 'volumes/stored/runtime.js', 'daemon/metrics.js', 'util/side-effect.js']);
  });

  it('volumes/ imports nothing from daemon/', () => {
    expect(tsFiles(join(src, 'volumes')).length).toBeGreaterThan(5);
    expect(violations('volumes', ['daemon'])).toEqual([]);
  });

  it('nbd/ imports nothing from volumes/ or daemon/', () => {
    expect(tsFiles(join(src, 'nbd')).length).toBeGreaterThan(5);
    expect(violations('nbd', ['volumes', 'daemon'])).toEqual([]);
  });
});
