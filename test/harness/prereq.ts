// Missing prerequisites (root, a tmpfs mount, a loop device, a VM kernel...):
// a visible skip on a developer's machine, a failure under CI (CI=true), so a
// CI run never passes by skipping what it was meant to test.

export function isCI(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

/**
 * For a test file's top level (describe.skipIf): `missing` describes what is
 * absent (undefined when all is there). Returns it as the reason to skip, and
 * says so on stderr; under CI throws instead.
 */
export function skipReason(missing: string | undefined): string | undefined {
  if (missing === undefined) return undefined;
  if (isCI()) throw new Error(`prerequisite missing under CI: ${missing}`);
  process.stderr.write(`SKIPPED (prerequisite missing): ${missing}\n`);
  return missing;
}
