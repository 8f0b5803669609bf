// FaultInjectingObjectStore: an ObjectStore wrapper for tests that makes
// chosen calls fail, slow down, or return damaged bodies, reproducibly.
//
// A rule matches calls by operation (and optionally key prefix) and fires on
// the nth matching call, on every kth, or with probability p (seeded PRNG,
// mulberry32, so a seed replays the same faults for the same call sequence),
// at most `times` times. What a firing rule does:
//   'fail'        throw `error` before calling the inner store (nothing applied)
//   'fail-after'  call the inner store (the put/delete lands), then throw `error`
//                 (the caller cannot tell it landed: the ambiguous case)
//   'truncate'    get only: return the body cut short (to a random shorter length)
//   'corrupt'     get only: return the body with one byte flipped
//   'delay'       only add latency
// Every rule may also add `latencyMs` (fixed or [min, max]) to the calls it fires on.
// For list, 'fail' throws after `afterItems` items (default 0) have been yielded.
// States: the rule list (mutable at runtime) and per-rule counters; `injected`
// counts faults fired per operation.
import { BlockgateError, ErrorCodes, type ErrorCode } from '../errors.js';
import { sleep } from './keys.js';
import type { GetOptions, GetResult, ListOptions, ObjectInfo, ObjectStore, PutOptions } from './object-store.js';

export type FaultOp = 'get' | 'put' | 'list' | 'head' | 'delete';
export type FaultAction = 'fail' | 'fail-after' | 'truncate' | 'corrupt' | 'delay';
/** Named errors: retryable ones first. */
export type FaultErrorKind = 'unavailable' | 'timeout' | 'throttled' | 'denied' | 'bad-request' | 'io' | 'not-found' | 'precondition';

export interface FaultRule {
  ops?: readonly FaultOp[];
  keyPrefix?: string;
  /** Fire on the nth matching call only (1-based). */
  nth?: number;
  /** Fire on every kth matching call. */
  every?: number;
  /** Fire with this probability (0..1). */
  probability?: number;
  /** Fire at most this many times in total. */
  times?: number;
  action?: FaultAction;
  /** For 'fail'/'fail-after' (default 'unavailable'). */
  error?: FaultErrorKind | ErrorCode | (() => Error);
  latencyMs?: number | readonly [number, number];
  /** list + 'fail': items yielded before the failure. */
  afterItems?: number;
}

export interface FaultOptions {
  seed?: number;
  rules?: readonly FaultRule[];
}

interface LiveRule {
  readonly id: number;
  readonly rule: FaultRule;
  calls: number;
  fired: number;
}

const KINDS: Record<FaultErrorKind, [ErrorCode, boolean]> = {
  unavailable: [ErrorCodes.STORE_UNAVAILABLE, true],
  timeout: [ErrorCodes.STORE_TIMEOUT, true],
  throttled: [ErrorCodes.STORE_THROTTLED, true],
  denied: [ErrorCodes.STORE_ACCESS_DENIED, false],
  'bad-request': [ErrorCodes.STORE_BAD_REQUEST, false],
  io: [ErrorCodes.IO, false],
  'not-found': [ErrorCodes.OBJECT_NOT_FOUND, false],
  precondition: [ErrorCodes.PRECONDITION_FAILED, false],
};
const RETRYABLE_CODES = new Set<string>([ErrorCodes.STORE_UNAVAILABLE, ErrorCodes.STORE_TIMEOUT, ErrorCodes.STORE_THROTTLED]);

export class FaultInjectingObjectStore implements ObjectStore {
  readonly location: string;
  readonly injected: Record<FaultOp, number> = { get: 0, put: 0, list: 0, head: 0, delete: 0 };
  private rules: LiveRule[] = [];
  private nextId = 1;
  private state: number;

  constructor(
    readonly inner: ObjectStore,
    options: FaultOptions = {},
  ) {
    this.location = inner.location;
    this.state = (options.seed ?? 1) >>> 0;
    for (const r of options.rules ?? []) this.addRule(r);
  }

  /** Add a rule; returns its id for removeRule. */
  addRule(rule: FaultRule): number {
    if (rule.probability !== undefined && !(rule.probability >= 0 && rule.probability <= 1)) {
      throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `fault probability must be in [0, 1], got ${rule.probability}`);
    }
    const id = this.nextId++;
    this.rules.push({ id, rule, calls: 0, fired: 0 });
    return id;
  }

  removeRule(id: number): void {
    this.rules = this.rules.filter((r) => r.id !== id);
  }

  clearRules(): void {
    this.rules = [];
  }

  /** Reseed the PRNG (the same seed replays the same probabilistic faults). */
  reseed(seed: number): void {
    this.state = seed >>> 0;
  }

  /** mulberry32: small, fast, good enough for test fault schedules. */
  random(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** The rules that fire for this call (each matching rule's counter advances). */
  private fire(op: FaultOp, key: string): FaultRule[] {
    const out: FaultRule[] = [];
    for (const live of this.rules) {
      const r = live.rule;
      if (r.ops && !r.ops.includes(op)) continue;
      if (r.keyPrefix !== undefined && !key.startsWith(r.keyPrefix)) continue;
      live.calls++;
      if (r.times !== undefined && live.fired >= r.times) continue;
      let hit = true;
      if (r.nth !== undefined) hit = live.calls === r.nth;
      else if (r.every !== undefined) hit = r.every > 0 && live.calls % r.every === 0;
      if (hit && r.probability !== undefined) hit = this.random() < r.probability;
      if (!hit) continue;
      live.fired++;
      out.push(r);
    }
    if (out.length > 0) this.injected[op]++;
    return out;
  }

  private async latency(rules: FaultRule[], signal: AbortSignal | undefined): Promise<void> {
    let ms = 0;
    for (const r of rules) {
      if (r.latencyMs === undefined) continue;
      ms += typeof r.latencyMs === 'number' ? r.latencyMs : r.latencyMs[0] + this.random() * (r.latencyMs[1] - r.latencyMs[0]);
    }
    if (ms > 0) await sleep(ms, signal, 'injected latency');
  }

  private makeError(rule: FaultRule, op: FaultOp, key: string): Error {
    const e = rule.error ?? 'unavailable';
    if (typeof e === 'function') return e();
    const [code, retryable] = e in KINDS ? KINDS[e as FaultErrorKind] : [e as ErrorCode, RETRYABLE_CODES.has(e)];
    return new BlockgateError(code, `injected fault: ${op} ${key} failed with ${code}`, {
      retryable,
      details: { injected: true, op, key, action: rule.action ?? 'fail' },
    });
  }

  private async around<T>(op: FaultOp, key: string, signal: AbortSignal | undefined, call: () => Promise<T>): Promise<T> {
    const rules = this.fire(op, key);
    if (rules.length === 0) return call();
    await this.latency(rules, signal);
    const before = rules.find((r) => (r.action ?? 'fail') === 'fail');
    if (before) throw this.makeError(before, op, key);
    const result = await call();
    const after = rules.find((r) => r.action === 'fail-after');
    if (after) throw this.makeError(after, op, key);
    return result;
  }

  async get(key: string, options: GetOptions = {}): Promise<GetResult> {
    const rules = this.fire('get', key);
    if (rules.length > 0) await this.latency(rules, options.signal);
    const fail = rules.find((r) => (r.action ?? 'fail') === 'fail');
    if (fail) throw this.makeError(fail, 'get', key);
    const res = await this.inner.get(key, options);
    if (rules.some((r) => r.action === 'fail-after')) throw this.makeError(rules.find((r) => r.action === 'fail-after')!, 'get', key);
    if (res.body.length > 0 && rules.some((r) => r.action === 'truncate')) {
      return { ...res, body: res.body.subarray(0, Math.floor(this.random() * res.body.length)) };
    }
    if (res.body.length > 0 && rules.some((r) => r.action === 'corrupt')) {
      const body = Buffer.from(res.body); // copy: never damage a buffer the inner store may share
      const i = Math.floor(this.random() * body.length);
      body[i] = body[i]! ^ 0xff;
      return { ...res, body };
    }
    return res;
  }

  head(key: string, options: { signal?: AbortSignal } = {}): Promise<ObjectInfo> {
    return this.around('head', key, options.signal, () => this.inner.head(key, options));
  }

  put(key: string, body: Buffer, options: PutOptions = {}): Promise<{ etag: string }> {
    return this.around('put', key, options.signal, () => this.inner.put(key, body, options));
  }

  delete(key: string, options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.around('delete', key, options.signal, () => this.inner.delete(key, options));
  }

  async *list(prefix: string, options: ListOptions = {}): AsyncIterable<ObjectInfo> {
    const rules = this.fire('list', prefix);
    if (rules.length > 0) await this.latency(rules, options.signal);
    const fail = rules.find((r) => (r.action ?? 'fail') === 'fail' || r.action === 'fail-after');
    if (!fail) {
      yield* this.inner.list(prefix, options);
      return;
    }
    const after = fail.afterItems ?? 0;
    let n = 0;
    if (after > 0) {
      for await (const info of this.inner.list(prefix, options)) {
        yield info;
        if (++n >= after) break;
      }
    }
    throw this.makeError(fail, 'list', prefix);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}


// ---------------------------------------------------------------- test hook

/** The environment variable that makes a daemon wrap its store in faults (tests only). */
export const TEST_FAULTS_ENV = 'BLOCKGATE_TEST_FAULTS';

const RULE_KEYS = new Set(['ops', 'keyPrefix', 'nth', 'every', 'probability', 'times', 'action', 'error', 'latencyMs', 'afterItems']);
const OPS: readonly FaultOp[] = ['get', 'put', 'list', 'head', 'delete'];
const ACTIONS: readonly FaultAction[] = ['fail', 'fail-after', 'truncate', 'corrupt', 'delay'];

/**
 * Parses BLOCKGATE_TEST_FAULTS: JSON `{"seed"?: n, "rules": [FaultRule, ...]}`
 * (rules as above; `error` a kind name or an ERR_ code). Returns undefined
 * when unset or empty; bad JSON or a bad rule is ERR_CONFIG naming it.
 * Example (every block read takes 200 ms more):
 *   BLOCKGATE_TEST_FAULTS='{"rules":[{"ops":["get"],"keyPrefix":"blocks/","action":"delay","latencyMs":200}]}'
 */
export function faultOptionsFromEnv(env: Record<string, string | undefined> = process.env): FaultOptions | undefined {
  const text = env[TEST_FAULTS_ENV];
  if (text === undefined || text.trim() === '') return undefined;
  const bad = (why: string): BlockgateError => new BlockgateError(ErrorCodes.CONFIG, `${TEST_FAULTS_ENV}: ${why}`, { retryable: false });
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw bad(`not JSON (${(err as Error).message})`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw bad('must be an object {"seed"?: n, "rules": [...]}');
  const o = parsed as Record<string, unknown>;
  for (const k of Object.keys(o)) if (k !== 'seed' && k !== 'rules') throw bad(`unknown key ${JSON.stringify(k)}`);
  if (o.seed !== undefined && !(Number.isInteger(o.seed) && (o.seed as number) >= 0)) throw bad('seed must be a non-negative integer');
  if (!Array.isArray(o.rules)) throw bad('rules must be an array');
  const count = (r: Record<string, unknown>, k: string, i: number): void => {
    if (r[k] !== undefined && !(Number.isInteger(r[k]) && (r[k] as number) >= (k === 'afterItems' ? 0 : 1))) throw bad(`rules[${i}].${k} must be a positive integer`);
  };
  const rules = o.rules.map((raw, i): FaultRule => {
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw bad(`rules[${i}] must be an object`);
    const r = raw as Record<string, unknown>;
    for (const k of Object.keys(r)) if (!RULE_KEYS.has(k)) throw bad(`rules[${i}]: unknown key ${JSON.stringify(k)}`);
    if (r.ops !== undefined && !(Array.isArray(r.ops) && r.ops.every((x) => OPS.includes(x as FaultOp)))) throw bad(`rules[${i}].ops must list some of ${OPS.join(', ')}`);
    if (r.keyPrefix !== undefined && typeof r.keyPrefix !== 'string') throw bad(`rules[${i}].keyPrefix must be a string`);
    for (const k of ['nth', 'every', 'times', 'afterItems']) count(r, k, i);
    if (r.probability !== undefined && !(typeof r.probability === 'number' && r.probability >= 0 && r.probability <= 1)) throw bad(`rules[${i}].probability must be in [0, 1]`);
    if (r.action !== undefined && !ACTIONS.includes(r.action as FaultAction)) throw bad(`rules[${i}].action must be one of ${ACTIONS.join(', ')}`);
    if (r.error !== undefined && !(typeof r.error === 'string' && (r.error in KINDS || Object.values(ErrorCodes).includes(r.error as ErrorCode)))) {
      throw bad(`rules[${i}].error must be one of ${Object.keys(KINDS).join(', ')} or an ERR_ code`);
    }
    const ms = r.latencyMs;
    const okMs = (x: unknown): boolean => typeof x === 'number' && Number.isFinite(x) && x >= 0;
    if (ms !== undefined && !(okMs(ms) || (Array.isArray(ms) && ms.length === 2 && okMs(ms[0]) && okMs(ms[1]) && ms[0] <= ms[1]))) {
      throw bad(`rules[${i}].latencyMs must be a number of ms or [min, max]`);
    }
    return r as FaultRule;
  });
  return { ...(o.seed !== undefined ? { seed: o.seed as number } : {}), rules };
}
