// The seam between the control channel and the daemon: the gateway agent
// turns each delivered command into one call on a GatewayCommandHandler (the
// daemon implements it) and reports what the call returned or threw.
// Commands are delivered at least once (a result lost on the way back means
// the command comes again); the agent remembers completed command ids so a
// redelivery in the same process is answered without calling the handler
// twice, but handlers should still be idempotent across restarts.
import { z } from 'zod';
import { BlockgateError, ErrorCodes } from '../../errors.js';
import { integer, nullIsAbsent, oneOf, parseWith, section, snapshotId, volumeName } from '../../config/fields.js';
import { VOLUME_MODES } from '../../config/volumes.js';
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

/** Absent and null both mean "not set" (null = unlimited / keep all). */
const optional = <S extends z.ZodType>(schema: S) => nullIsAbsent(schema.optional()).transform((v) => v ?? null);

/**
 * One schema per command's args, built from the config's field schemas
 * (volume names, snapshot ids, modes: the same rules as the YAML and the admin API).
 */
const COMMAND_ARGS = {
  'create-volume': section({
    name: volumeName,
    size: integer(1, Number.MAX_SAFE_INTEGER, 'a number of bytes'),
    mode: oneOf(VOLUME_MODES).default('raw'),
    fromSnapshot: nullIsAbsent(snapshotId.optional()),
  }).transform((a) => ({ name: a.name, size: a.size, mode: a.mode, ...(a.fromSnapshot ? { fromSnapshot: a.fromSnapshot } : {}) })),
  snapshot: section({ volumes: z.array(volumeName).min(1, 'must be a non-empty list of volume names') }),
  'set-bandwidth': section({
    upload: optional(integer(1, Number.MAX_SAFE_INTEGER, 'bytes per second')),
    download: optional(integer(1, Number.MAX_SAFE_INTEGER, 'bytes per second')),
  }).refine((a) => a.upload !== null || a.download !== null, { error: 'give upload and/or download (bytes per second; null = unlimited)' }),
  'set-snapshot-schedule': section({
    volume: volumeName,
    intervalSeconds: optional(integer(60, Number.MAX_SAFE_INTEGER, 'a number of seconds')),
    retain: optional(integer(1)),
  }),
} satisfies Record<CommandType, z.ZodType>;

/** Validates and normalises command arguments (used by the server on enqueue and by the agent on delivery). */
export function validateCommand(type: string, args: unknown): { type: CommandType; args: Record<string, unknown> } {
  if (!Object.hasOwn(COMMAND_ARGS, type)) {
    throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, `${type}: unknown command type (known: ${Object.keys(COMMAND_ARGS).join(', ')})`);
  }
  const t = type as CommandType;
  const parsed = parseWith(COMMAND_ARGS[t], args, { code: ErrorCodes.INVALID_ARGUMENT, prefix: 'args', context: t }) as Record<string, unknown>;
  return { type: t, args: parsed };
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
