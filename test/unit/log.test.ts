// The logger's line shape (what test/harness logRecordReader and log
// processors parse): one JSON object per line {level, time, msg, ...bindings,
// ...fields}; thresholds; child bindings merged (each key once); Error
// values as {message, code}; the text rendering.
import { describe, expect, it } from 'vitest';
import { BlockgateError, ErrorCodes } from '../../src/errors.js';
import { Logger, silentLogger } from '../../src/log.js';

function capture(options: ConstructorParameters<typeof Logger>[0] = {}): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  return { logger: new Logger({ ...options, write: (l) => { lines.push(l); } }), lines };
}

describe('Logger', () => {
  it('writes one JSON object per line with level, ISO time, msg and fields', () => {
    const { logger, lines } = capture();
    logger.info('volume opened', { volume: 'v1', size: 4096, readOnly: false, nothing: undefined });
    logger.warn('no fields');
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => l.endsWith('\n') && l.indexOf('\n') === l.length - 1)).toBe(true);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(rec).toEqual({ level: 'info', time: expect.any(String), msg: 'volume opened', volume: 'v1', size: 4096, readOnly: false });
    expect(new Date(rec.time as string).toISOString()).toBe(rec.time);
    expect(JSON.parse(lines[1]!)).toMatchObject({ level: 'warn', msg: 'no fields' });
  });

  it('drops records below the level, and silent drops everything', () => {
    const { logger, lines } = capture({ level: 'warn' });
    logger.debug('d');
    logger.info('i');
    logger.warn('w');
    logger.error('e');
    expect(lines.map((l) => (JSON.parse(l) as { level: string }).level)).toEqual(['warn', 'error']);
    expect(logger.enabled('info')).toBe(false);
    expect(logger.enabled('error')).toBe(true);
    const silent = capture({ level: 'silent' });
    silent.logger.error('nope');
    expect(silent.lines).toEqual([]);
    expect(silentLogger.enabled('error')).toBe(false);
  });

  it('children carry merged bindings, each key once; a field overrides a binding', () => {
    const { logger, lines } = capture({ level: 'debug' });
    const child = logger.child({ component: 'nbd', volume: 'a' }).child({ conn: 7, volume: 'b' });
    child.debug('hello', { extra: [1, 2] });
    child.info('override', { conn: 8 });
    logger.info('parent unchanged');
    expect(lines[0]!.match(/"volume"/g)).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 'debug', component: 'nbd', conn: 7, volume: 'b', extra: [1, 2], msg: 'hello' });
    expect((JSON.parse(lines[1]!) as { conn: number }).conn).toBe(8);
    expect(JSON.parse(lines[2]!)).not.toHaveProperty('component');
  });

  it('logs Error values as {message, code} and messages verbatim', () => {
    const { logger, lines } = capture();
    const fields = { err: new BlockgateError(ErrorCodes.IO, 'disk gone'), cause: new Error('plain') };
    logger.error('100% %s %d failed', fields);
    expect(JSON.parse(lines[0]!)).toMatchObject({
      msg: '100% %s %d failed', err: { message: 'disk gone', code: ErrorCodes.IO }, cause: { message: 'plain' },
    });
    expect(fields.err).toBeInstanceOf(Error); // the caller's object is not modified
  });

  it('renders text lines for people', () => {
    const { logger, lines } = capture({ format: 'text' });
    logger.child({ component: 'admin' }).warn('admin request failed', { path: '/v1/x', status: 500 });
    expect(lines[0]).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z WARN  admin request failed component=admin path=\/v1\/x status=500\n$/);
  });
});
