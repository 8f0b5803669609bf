// Progress bar for long CLI operations: drawn on stderr only when stderr is a
// TTY (never in --json mode or when piped), at most 10 redraws a second, with
// rate and ETA. States: idle → drawing → done (line cleared). No effect on
// stdout, so machine-readable output stays clean.
import { formatSize } from '../util/size.js';

export interface ProgressBar {
  update(done: number, total: number, note?: string): void;
  done(): void;
}

const NOOP: ProgressBar = { update() {}, done() {} };

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '?';
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

export function createProgressBar(label: string, enabled: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressBar {
  if (!enabled || !stream.isTTY) return NOOP;
  const start = Date.now();
  let last = 0;
  let drawn = false;
  return {
    update(done, total, note) {
      const now = Date.now();
      if (now - last < 100 && done < total) return;
      last = now;
      const width = Math.max(10, Math.min(30, (stream.columns ?? 80) - 70));
      const frac = total > 0 ? Math.min(1, done / total) : 1;
      const filled = Math.round(frac * width);
      const elapsed = (now - start) / 1000;
      const rate = elapsed > 0 ? done / elapsed : 0;
      const eta = rate > 0 ? ((total - done) / rate) * 1000 : NaN;
      const line = `${label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ` +
        `${formatSize(done)}/${formatSize(total)} ${formatSize(rate)}/s ETA ${formatDuration(eta)}${note ? ' ' + note : ''}`;
      stream.write(`\r${line.slice(0, (stream.columns ?? 120) - 1)}\x1b[K`);
      drawn = true;
    },
    done() {
      if (drawn) stream.write('\r\x1b[K');
    },
  };
}
