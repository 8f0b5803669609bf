// Structured logger: one JSON object per line on stderr (or human text when
// format is 'text'). Levels are ordered; records below the threshold are
// dropped before any formatting work.

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';
export type LogFormat = 'json' | 'text';

const LEVEL_RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

export interface LoggerOptions {
  level?: LogLevel;
  format?: LogFormat;
  write?: (line: string) => void;
}

export class Logger {
  private readonly threshold: number;
  private readonly format: LogFormat;
  private readonly write: (line: string) => void;
  private readonly bindings: Record<string, unknown>;

  constructor(options: LoggerOptions = {}, bindings: Record<string, unknown> = {}) {
    this.threshold = LEVEL_RANK[options.level ?? 'info'];
    this.format = options.format ?? 'json';
    this.write = options.write ?? ((line) => process.stderr.write(line));
    this.bindings = bindings;
  }

  /** A logger whose records all carry `bindings` (e.g. {component: 'nbd', conn: 7}). */
  child(bindings: Record<string, unknown>): Logger {
    const child = Object.create(Logger.prototype) as Logger;
    Object.assign(child, this, { bindings: { ...this.bindings, ...bindings } });
    return child;
  }

  enabled(level: LogLevel): boolean {
    return LEVEL_RANK[level] >= this.threshold;
  }

  debug(msg: string, fields?: Record<string, unknown>): void { this.log('debug', msg, fields); }
  info(msg: string, fields?: Record<string, unknown>): void { this.log('info', msg, fields); }
  warn(msg: string, fields?: Record<string, unknown>): void { this.log('warn', msg, fields); }
  error(msg: string, fields?: Record<string, unknown>): void { this.log('error', msg, fields); }

  private log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (LEVEL_RANK[level] < this.threshold) return;
    const record: Record<string, unknown> = { time: new Date().toISOString(), level, msg, ...this.bindings, ...fields };
    for (const [k, v] of Object.entries(record)) {
      if (v instanceof Error) record[k] = { message: v.message, code: (v as { code?: unknown }).code };
    }
    if (this.format === 'json') {
      this.write(JSON.stringify(record) + '\n');
    } else {
      const { time, level: lv, msg: m, ...rest } = record;
      const extra = Object.entries(rest).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
      this.write(`${time} ${String(lv).toUpperCase().padEnd(5)} ${m}${extra ? ' ' + extra : ''}\n`);
    }
  }
}

/** A logger that drops everything (library default, tests). */
export const silentLogger = new Logger({ level: 'silent' });
