// Drives crash tests with a real NBD client (python3-libnbd): a writer that
// runs several connections at once (one thread and one handle each) issuing
// seeded random WRITE (some with FUA), WRITE_ZEROES, TRIM and FLUSH requests
// over 4 KiB units, and a checker that reads the whole volume back.
//
// Writer output, one line per event, printed under one lock so the line
// order is a global order (see unit-model.ts):
//   B <op> <W|Z|T|F> <first unit> <units> <fua 0|1>   before the request is sent
//   A <op>                                            after its reply arrived
//   E <thread> <message>                              the connection failed
// A written unit holds "BGU1" + u64 unit + u64 op, then sha256 of that
// header repeated: the checker tells every version, zeros and garbage apart.
// Checker output: "U <unit> <op>" per unit holding data, "X <unit>" per
// unit holding garbage (zeros are implicit), then "SHA <sha256 of the
// volume>" and "DONE <units read>".
import { spawn, type ChildProcess } from 'node:child_process';
import { SYSTEM_PYTHON, run } from './nbd-tools.js';
import type { Content, OpKind, UnitModel } from './unit-model.js';

export const UNIT = 4096;

const UNIT_PY = `
import hashlib, struct
UNIT = ${UNIT}
def unit(u, v):
    head = b'BGU1' + struct.pack('<QQ', u, v)
    d = hashlib.sha256(head).digest()
    return head + (d * (UNIT // 32 + 1))[:UNIT - len(head)]
`;

const WRITER_PY = `
import json, random, sys, threading, nbd
${UNIT_PY}
P = json.loads(sys.argv[1])
lock = threading.Lock()
next_op = [P['base']]
def out(line):
    sys.stdout.write(line + '\\n')
    sys.stdout.flush()
def pick(rnd):
    n = rnd.randint(1, P['maxUnits'])
    span = P['hotUnits'] if rnd.random() < 0.7 else P['units']
    return rnd.randrange(0, span - n + 1), n
def worker(t):
    rnd = random.Random(P['seed'] * 1009 + t)
    try:
        h = nbd.NBD()
        h.connect_uri(P['uri'])
        while True:
            r = rnd.random()
            kind = 'F' if r < P['flush'] else 'Z' if r < P['flush'] + P['zero'] else 'T' if r < P['flush'] + P['zero'] + P['trim'] else 'W'
            u, n = pick(rnd)
            fua = kind != 'F' and rnd.random() < P['fua']
            flags = nbd.CMD_FLAG_FUA if fua else 0
            with lock:
                op = next_op[0]
                next_op[0] += 1
            buf = b''.join(unit(u + k, op) for k in range(n)) if kind == 'W' else None
            with lock:
                out('B %d %s %d %d %d' % (op, kind, u, n, 1 if fua else 0))
            if kind == 'W':
                h.pwrite(buf, u * UNIT, flags)
            elif kind == 'Z':
                h.zero(n * UNIT, u * UNIT, flags)
            elif kind == 'T':
                h.trim(n * UNIT, u * UNIT, flags)
            else:
                h.flush()
            with lock:
                out('A %d' % op)
    except Exception as e:
        with lock:
            out('E %d %s' % (t, str(e).replace('\\n', ' ')))
ts = [threading.Thread(target=worker, args=(t,)) for t in range(P['threads'])]
for t in ts: t.start()
for t in ts: t.join()
`;

const CHECKER_PY = `
import hashlib, struct, sys, nbd
${UNIT_PY}
uri, size = sys.argv[1], int(sys.argv[2])
h = nbd.NBD()
h.connect_uri(uri)
if h.get_size() != size:
    raise SystemExit('export size %d, expected %d' % (h.get_size(), size))
whole = hashlib.sha256()
zero = bytes(UNIT)
n = 0
lines = []
CHUNK = 1 << 20
for off in range(0, size, CHUNK):
    buf = h.pread(min(CHUNK, size - off), off)
    whole.update(buf)
    for i in range(0, len(buf), UNIT):
        u = (off + i) // UNIT
        b = buf[i:i + UNIT]
        n += 1
        if b == zero:
            continue
        if b[:4] == b'BGU1':
            uu, v = struct.unpack('<QQ', b[4:20])
            if uu == u and b == unit(u, v):
                lines.append('U %d %d' % (u, v))
                continue
        lines.append('X %d' % u)
lines.append('SHA ' + whole.hexdigest())
lines.append('DONE %d' % n)
sys.stdout.write('\\n'.join(lines) + '\\n')
`;

const FILL_PY = `
import sys, nbd
${UNIT_PY}
uri, size, base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
h = nbd.NBD()
h.connect_uri(uri)
CHUNK = 1 << 20
for off in range(0, size, CHUNK):
    n = min(CHUNK, size - off) // UNIT
    h.pwrite(b''.join(unit(off // UNIT + k, base + off // UNIT + k) for k in range(n)), off)
h.flush()
print('FILLED %d' % (size // UNIT))
`;

/** Writes every unit u as version base+u and flushes; resolves the contents (base+u per unit). */
export async function fillUnits(uri: string, size: number, base: number): Promise<Content[]> {
  const r = await run(SYSTEM_PYTHON, ['-c', FILL_PY, uri, String(size), String(base)], { timeoutMs: 120_000 });
  if (r.code !== 0 || r.stdout.trim() !== `FILLED ${size / UNIT}`) throw new Error(`fill failed (exit ${r.code ?? r.signal}): ${r.stdout}${r.stderr.slice(-2000)}`);
  return Array.from({ length: size / UNIT }, (_, u) => base + u);
}

export interface WriterParams {
  uri: string;
  seed: number;
  /** Connections (threads). */
  threads: number;
  /** Units the writer may touch: [0, units); 70% of operations go to [0, hotUnits). */
  units: number;
  hotUnits: number;
  /** Largest operation, in units. */
  maxUnits: number;
  /** First op number (unique across cycles: a unit's content names the op that wrote it). */
  base: number;
  /** Operation mix (the rest are WRITEs), and the share of WRITE/ZERO/TRIM sent with FUA. */
  flush: number;
  zero: number;
  trim: number;
  fua: number;
}

export interface WriterRun {
  /** Resolves once `n` operations were acknowledged; rejects if the writer stops first. */
  acked(n: number, timeoutMs?: number): Promise<void>;
  /** Marks the moment the daemon is killed: errors seen before it are failures. */
  markKill(): void;
  /** Waits for the writer to exit; feeds every event to the model; returns counts and failures. */
  finish(model: UnitModel): Promise<WriterResult>;
}

export interface WriterResult {
  began: number;
  acked: number;
  byKind: Record<OpKind, number>;
  fuaAcked: number;
  flushesAcked: number;
  /** The op numbers used were < nextBase. */
  nextBase: number;
  /** Problems that are test failures (an error from a live daemon, a malformed line, a writer crash). */
  failures: string[];
}

export function startWriter(p: WriterParams): WriterRun {
  const child: ChildProcess = spawn(SYSTEM_PYTHON, ['-c', WRITER_PY, JSON.stringify(p)], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let partial = '';
  let stderr = '';
  let ackCount = 0;
  let killAt = -1;
  let waiter: { n: number; resolve: () => void } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => child.once('close', (code, signal) => res({ code, signal })));
  child.stdout!.on('data', (c: Buffer) => {
    partial += c.toString();
    let nl: number;
    while ((nl = partial.indexOf('\n')) >= 0) {
      const line = partial.slice(0, nl);
      partial = partial.slice(nl + 1);
      lines.push(line);
      if (line.startsWith('A ')) ackCount++;
    }
    if (waiter && ackCount >= waiter.n) waiter.resolve();
  });
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });

  return {
    acked: (n, timeoutMs = 120_000) => new Promise<void>((resolve, reject) => {
      if (ackCount >= n) return resolve();
      const timer = setTimeout(() => reject(new Error(`writer acknowledged ${ackCount}/${n} operations in ${timeoutMs} ms\n${lines.slice(-5).join('\n')}\n${stderr}`)), timeoutMs);
      waiter = { n, resolve: () => { clearTimeout(timer); waiter = undefined; resolve(); } };
      void exited.then(({ code }) => { clearTimeout(timer); reject(new Error(`writer exited (${code}) after ${ackCount}/${n} acknowledged operations\n${lines.filter((l) => l.startsWith('E ')).join('\n')}\n${stderr}`)); });
    }),
    markKill: () => { killAt = lines.length; },
    finish: async (model) => {
      const { code } = await exited;
      const failures: string[] = [];
      if (code !== 0) failures.push(`writer exited ${code}: ${stderr.slice(-2000)}`);
      const res: WriterResult = { began: 0, acked: 0, byKind: { W: 0, Z: 0, T: 0, F: 0 }, fuaAcked: 0, flushesAcked: 0, nextBase: p.base, failures };
      const kinds = new Map<number, { kind: OpKind; fua: boolean }>();
      lines.forEach((line, at) => {
        let m: RegExpExecArray | null;
        if ((m = /^B (\d+) ([WZTF]) (\d+) (\d+) ([01])$/.exec(line))) {
          const op = Number(m[1]);
          const kind = m[2] as OpKind;
          model.began(at, op, kind, Number(m[3]), Number(m[4]), m[5] === '1');
          kinds.set(op, { kind, fua: m[5] === '1' });
          res.began++;
          res.nextBase = Math.max(res.nextBase, op + 1);
        } else if ((m = /^A (\d+)$/.exec(line))) {
          const op = Number(m[1]);
          model.acked(at, op);
          const k = kinds.get(op)!;
          res.acked++;
          res.byKind[k.kind]++;
          if (k.fua) res.fuaAcked++;
          if (k.kind === 'F') res.flushesAcked++;
        } else if (/^E /.test(line)) {
          if (killAt < 0 || at < killAt) failures.push(`a live daemon failed a request: ${line}`);
        } else {
          failures.push(`unexpected writer output: ${JSON.stringify(line)}`);
        }
      });
      return res;
    },
  };
}

export interface CheckResult {
  /** Content per unit: 0 zeros, n op n, -1 garbage. */
  contents: Content[];
  units: number;
  sha256: string;
}

/** Reads the whole volume through NBD; throws unless the checker ran to the end and accounted for every unit. */
export async function readUnits(uri: string, size: number): Promise<CheckResult> {
  const r = await run(SYSTEM_PYTHON, ['-c', CHECKER_PY, uri, String(size)], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`checker failed (exit ${r.code ?? r.signal}): ${r.stderr.slice(-2000)}`);
  const units = size / UNIT;
  const contents = new Array<Content>(units).fill(0);
  let done = -1;
  let sha = '';
  for (const line of r.stdout.split('\n')) {
    let m: RegExpExecArray | null;
    if ((m = /^U (\d+) (\d+)$/.exec(line))) contents[Number(m[1])] = Number(m[2]);
    else if ((m = /^X (\d+)$/.exec(line))) contents[Number(m[1])] = -1;
    else if ((m = /^SHA ([0-9a-f]{64})$/.exec(line))) sha = m[1]!;
    else if ((m = /^DONE (\d+)$/.exec(line))) done = Number(m[1]);
    else if (line !== '') throw new Error(`unexpected checker output: ${JSON.stringify(line)}`);
  }
  if (done !== units || sha === '') throw new Error(`checker read ${done} of ${units} units (sha ${sha || 'missing'})`);
  return { contents, units: done, sha256: sha };
}
