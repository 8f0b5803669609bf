// Admin routes of the cached mode: user snapshots of cached volumes, mapped
// onto CachedRuntime's typed operations. (POST /v1/volumes, which creates a
// volume of any mode, is the daemon's: daemon.ts.)
import type { CachedRuntime } from '../../volumes/cached/runtime.js';
import type { AdminRoute } from '../admin-api.js';

export function cachedRoutes(runtime: CachedRuntime): AdminRoute[] {
  return [
    {
      method: 'POST', path: '/v1/volumes/:name/snapshots',
      handler: (req) => {
        const b = (req.body ?? {}) as { description?: unknown; waitSeconds?: unknown };
        const wait = typeof b.waitSeconds === 'number' && b.waitSeconds > 0 ? Math.min(b.waitSeconds, 3600) * 1000 : 0;
        return runtime.snapshot(req.params.name!, { ...(typeof b.description === 'string' ? { description: b.description } : {}), waitMs: wait });
      },
    },
    { method: 'GET', path: '/v1/volumes/:name/snapshots', handler: async (req) => ({ snapshots: await runtime.listSnapshots(req.params.name!) }) },
  ];
}
