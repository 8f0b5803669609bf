// Serves the Prometheus text format on GET /metrics (and GET /healthz) on the
// configured host:port. Read-only; nothing else is exposed here.
import { createServer, type Server } from 'node:http';
import type { Logger } from '../log.js';
import { parseHostPort } from '../util/host-port.js';
import type { MetricsRegistry } from './metrics.js';

export async function startMetricsServer(listen: string, registry: MetricsRegistry, logger: Logger): Promise<{ address: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      const body = registry.render();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' });
      res.end(body);
    } else if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found: try /metrics\n');
    }
  });
  const { host, port } = parseHostPort(listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address();
  const address = typeof addr === 'object' && addr ? `${addr.address}:${addr.port}` : listen;
  logger.info('metrics listening', { metrics: address });
  return {
    address,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }),
  };
}
