// What `blockgate status` reports (and /metrics reads: metrics.ts), gathered from live state.
import type { GatewayStatus } from '../control-plane/agent/agent.js';
import type { NbdExport } from '../nbd/export.js';
import type { ConnectionInfo, NbdServer } from '../nbd/server.js';

export interface VolumeStatus {
  readonly name: string;
  readonly mode: string;
  readonly size: number;
  readonly readOnly: boolean;
  readonly tls: string;
  readonly connections: number;
  readonly requests: Record<string, number>;
  readonly bytesRead: number;
  readonly bytesWritten: number;
  readonly errors: number;
  /** Mode-specific state (stored: log use, upload lag/throughput, last snapshot, restore progress). */
  readonly details?: Record<string, unknown>;
}

export interface DaemonStatus {
  readonly version: string;
  readonly pid: number;
  readonly startedAt: string;
  readonly uptimeSeconds: number;
  readonly listeners: readonly string[];
  readonly volumes: readonly VolumeStatus[];
  readonly connections: readonly ConnectionInfo[];
  readonly gateway?: GatewayStatus;
}

export interface StatusSource {
  /** The gateway agent's activation/control-channel state, when a control: section is configured. */
  gateway?: () => GatewayStatus;
  readonly version: string;
  readonly startedAt: Date;
  readonly addresses: readonly string[];
  readonly server: NbdServer;
  readonly exports: readonly NbdExport[];
  readonly modes: ReadonlyMap<string, string>;
  /** Mode-specific details of a volume, when its mode has any. */
  readonly details?: (name: string) => Record<string, unknown> | undefined;
}

export function collectStatus(src: StatusSource): DaemonStatus {
  const connections = src.server.connections();
  return {
    version: src.version,
    pid: process.pid,
    startedAt: src.startedAt.toISOString(),
    uptimeSeconds: Math.round((Date.now() - src.startedAt.getTime()) / 1000),
    listeners: src.addresses,
    volumes: src.exports.map((e) => ({
      name: e.name,
      mode: src.modes.get(e.name) ?? 'raw',
      size: e.device.size,
      readOnly: e.device.caps.readOnly,
      tls: e.tls,
      connections: connections.filter((c) => c.export === e.name).length,
      requests: { ...e.counters.requests },
      bytesRead: e.counters.bytesRead,
      bytesWritten: e.counters.bytesWritten,
      errors: e.counters.errors,
      ...(src.details?.(e.name) ? { details: src.details(e.name)! } : {}),
    })),
    connections,
    ...(src.gateway ? { gateway: src.gateway() } : {}),
  };
}
