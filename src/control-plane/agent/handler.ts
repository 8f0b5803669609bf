// The seam between the control channel and the daemon: the gateway agent
// turns each delivered command into one call on a GatewayCommandHandler (the
// daemon implements it) and reports what the call returned or threw.
// Commands are delivered at least once (a result lost on the way back means
// the command comes again); the agent remembers completed command ids so a
// redelivery in the same process is answered without calling the handler
// twice, but handlers should still be idempotent across restarts.
import { BlockgateError, ErrorCodes } from '../../errors.js';
import type { CommandType } from '../protocol.js';

export interface CreateVolumeSpec {
  name: string;
  /** Bytes. */
  size: number;
  /** Volume mode as the daemon understands it (e.g. 'raw', 'cached', 'stored'). */
  mode: string;
  /** Optional snapshot to create the volume from. */
  fromSnapshot?: string;
}

export interface SnapshotRequest {
  volumes: string[];
}

export interface BandwidthLimits {
  /** Bytes per second; null = unlimited. */
  upload: number | null;
  download: number | null;
}

export interface SnapshotSchedule {
  volume: string;
  /** Seconds between snapshots; null disables the schedule. */
  intervalSeconds: number | null;
  /** Snapshots to keep; null = keep all. */
  retain: number | null;
}

/** Implemented by the daemon. Return value (JSON-serialisable) is reported as the command's result. */
export interface GatewayCommandHandler {
  createVolume(spec: CreateVolumeSpec): Promise<unknown>;
  snapshot(request: SnapshotRequest): Promise<unknown>;
  setBandwidthLimit(limits: BandwidthLimits): Promise<unknown>;
  setSnapshotSchedule(schedule: SnapshotSchedule): Promise<unknown>;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function bad(type: string, msg: string): never {
  throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${type}: ${msg}`);
}

function volumeName(type: string, v: unknown, key: string): string {
  if (typeof v !== 'string' || !NAME.test(v)) bad(type, `${key} must be a volume name (1-128 letters, digits, '.', '_' or '-'), got ${JSON.stringify(v)}`);
  return v;
}

function optCount(type: string, v: unknown, key: string, min: number): number | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) bad(type, `${key} must be an integer >= ${min} or null, got ${JSON.stringify(v)}`);
  return v;
}

/** Validates and normalises command arguments (used by the server on enqueue and by the agent on delivery). */
export function validateCommand(type: string, args: unknown): { type: CommandType; args: Record<string, unknown> } {
  if (args === null || typeof args !== 'object' || Array.isArray(args)) bad(type, 'args must be an object');
  const a = args as Record<string, unknown>;
  switch (type) {
    case 'create-volume': {
      const size = optCount(type, a.size, 'size', 1) ?? bad(type, 'size (bytes) is required');
      const mode = a.mode ?? 'raw';
      if (typeof mode !== 'string' || !/^[a-z][a-z0-9-]{0,31}$/.test(mode)) bad(type, `mode must be a word such as raw, cached or stored, got ${JSON.stringify(mode)}`);
      const spec: Record<string, unknown> = { name: volumeName(type, a.name, 'name'), size, mode };
      if (a.fromSnapshot !== undefined && a.fromSnapshot !== null) {
        if (typeof a.fromSnapshot !== 'string' || a.fromSnapshot === '') bad(type, 'fromSnapshot must be a snapshot id');
        spec.fromSnapshot = a.fromSnapshot;
      }
      return { type, args: spec };
    }
    case 'snapshot': {
      if (!Array.isArray(a.volumes) || a.volumes.length === 0) bad(type, 'volumes must be a non-empty list of volume names');
      return { type, args: { volumes: (a.volumes as unknown[]).map((v, i) => volumeName(type, v, `volumes[${i}]`)) } };
    }
    case 'set-bandwidth': {
      if (a.upload === undefined && a.download === undefined) bad(type, 'give upload and/or download (bytes per second; null = unlimited)');
      return { type, args: { upload: optCount(type, a.upload, 'upload', 1), download: optCount(type, a.download, 'download', 1) } };
    }
    case 'set-snapshot-schedule':
      return {
        type,
        args: {
          volume: volumeName(type, a.volume, 'volume'),
          intervalSeconds: optCount(type, a.intervalSeconds, 'intervalSeconds', 60),
          retain: optCount(type, a.retain, 'retain', 1),
        },
      };
    default:
      return bad(type, `unknown command type (known: create-volume, snapshot, set-bandwidth, set-snapshot-schedule)`);
  }
}

/** Calls the handler method for one validated command. */
export async function applyCommand(handler: GatewayCommandHandler, type: CommandType, args: Record<string, unknown>): Promise<unknown> {
  switch (type) {
    case 'create-volume': return handler.createVolume(args as unknown as CreateVolumeSpec);
    case 'snapshot': return handler.snapshot(args as unknown as SnapshotRequest);
    case 'set-bandwidth': return handler.setBandwidthLimit(args as unknown as BandwidthLimits);
    case 'set-snapshot-schedule': return handler.setSnapshotSchedule(args as unknown as SnapshotSchedule);
  }
}

export interface RecordedCall {
  method: keyof GatewayCommandHandler;
  arg: unknown;
}

/**
 * A handler that records every call (tests, the standalone agent runner).
 * set-bandwidth really stores its values; createVolume fails for names in
 * `failVolumes` (so tests can see a failed command) and is slow for names in
 * `slowVolumes` (so tests can see a delivered one).
 */
export class RecordingCommandHandler implements GatewayCommandHandler {
  readonly calls: RecordedCall[] = [];
  bandwidth: BandwidthLimits = { upload: null, download: null };
  readonly schedules = new Map<string, SnapshotSchedule>();

  constructor(private readonly options: {
    failVolumes?: string[];
    /** createVolume for these names takes `slowMs` (default 3 s) before answering. */
    slowVolumes?: string[];
    slowMs?: number;
    onCall?: (call: RecordedCall) => void;
  } = {}) {}

  private record(method: keyof GatewayCommandHandler, arg: unknown): void {
    const call = { method, arg };
    this.calls.push(call);
    this.options.onCall?.(call);
  }

  async createVolume(spec: CreateVolumeSpec): Promise<unknown> {
    this.record('createVolume', spec);
    if (this.options.slowVolumes?.includes(spec.name)) await new Promise((r) => setTimeout(r, this.options.slowMs ?? 3000));
    if (this.options.failVolumes?.includes(spec.name)) throw new BlockgateError(ErrorCodes.NO_SPACE, `cannot create volume ${spec.name}: no space left for ${spec.size} bytes`);
    return { volume: spec.name, size: spec.size };
  }

  async snapshot(request: SnapshotRequest): Promise<unknown> {
    this.record('snapshot', request);
    return { snapshots: request.volumes.map((v) => ({ volume: v, snapshotId: `snap-${v}-${this.calls.length}` })) };
  }

  async setBandwidthLimit(limits: BandwidthLimits): Promise<unknown> {
    this.record('setBandwidthLimit', limits);
    this.bandwidth = { ...limits };
    return { bandwidth: this.bandwidth };
  }

  async setSnapshotSchedule(schedule: SnapshotSchedule): Promise<unknown> {
    this.record('setSnapshotSchedule', schedule);
    this.schedules.set(schedule.volume, schedule);
    return { schedule };
  }
}
