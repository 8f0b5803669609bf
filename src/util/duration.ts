// Durations: ONE grammar for the YAML configs, the admin API and the CLI.
//   500ms, 30s, 5m, 2h, 1d, 1w; decimals allowed (1.5h); case-insensitive;
//   a bare number (a YAML number, or digits without a unit) is seconds.
// Values come back in milliseconds, rounded.

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };
const DURATION = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$/i;

/** Milliseconds, or undefined when `value` is not a duration. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? Math.round(value * 1000) : undefined;
  const m = DURATION.exec(value);
  if (!m) return undefined;
  const ms = Math.round(Number(m[1]) * UNIT_MS[(m[2] ?? 's').toLowerCase()]!);
  return Number.isSafeInteger(ms) ? ms : undefined;
}

/** The shortest exact form in the grammar above ("90s", "1500ms", "2h"), so parseDuration(formatDuration(x)) === x. */
export function formatDuration(ms: number): string {
  for (const unit of ['w', 'd', 'h', 'm', 's'] as const) {
    const n = UNIT_MS[unit]!;
    if (ms >= n && ms % n === 0) return `${ms / n}${unit}`;
  }
  return `${ms}ms`;
}

/** The examples every "not a duration" message shows. */
export const DURATION_EXAMPLES = '500ms, 30s, 5m, 2h, 1d';
