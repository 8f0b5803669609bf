// Admin routes of the stored mode: crash-consistent snapshot groups of
// stored volumes, mapped onto StoredRuntime's typed operations.
import { BlockgateError, ErrorCodes } from '../../errors.js';
import type { StoredRuntime } from '../../volumes/stored/runtime.js';
import type { AdminRoute } from '../admin-api.js';

/** At most an hour of waiting in one request. */
function waitMs(seconds: unknown): number {
  return typeof seconds === 'number' && seconds > 0 ? Math.min(seconds, 3600) * 1000 : 0;
}

export function storedRoutes(runtime: StoredRuntime): AdminRoute[] {
  return [
    {
      method: 'POST', path: '/v1/snapshots',
      handler: (req) => {
        const b = (req.body ?? {}) as { volumes?: unknown; description?: unknown; waitSeconds?: unknown };
        if (!Array.isArray(b.volumes) || b.volumes.some((x) => typeof x !== 'string')) {
          throw new BlockgateError(ErrorCodes.INVALID_ARGUMENT, 'body must be {"volumes": ["name", ...], "description"?: string, "waitSeconds"?: number}');
        }
        return runtime.createSnapshot(b.volumes as string[], {
          ...(typeof b.description === 'string' ? { description: b.description } : {}),
          waitMs: waitMs(b.waitSeconds),
        });
      },
    },
    {
      method: 'GET', path: '/v1/snapshots',
      handler: async (req) => ({ snapshots: await runtime.listSnapshots(req.query.get('volume') ?? undefined) }),
    },
    {
      method: 'GET', path: '/v1/snapshots/:id',
      handler: (req) => runtime.getSnapshot(req.params.id!, waitMs(Number(req.query.get('waitSeconds') ?? '0'))),
    },
    {
      method: 'DELETE', path: '/v1/snapshots/:id',
      handler: async (req) => { await runtime.deleteSnapshot(req.params.id!); return { deleted: req.params.id }; },
    },
  ];
}
