// A TCP port on 127.0.0.1 that was free a moment ago (the kernel picked it).
// Another process may take it before the caller binds: callers that start a
// server on it retry or fail with a clear error.
import { createServer } from 'node:net';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
