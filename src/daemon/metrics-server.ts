// Serves the Prometheus text format on GET /metrics (and GET /healthz) on the
// configured host:port. Read-only; nothing else is exposed here.
import { createServer, type Server } from 'node:http';
import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
import { parseHostPort } from '../util/host-port.js';
import type { DaemonMetrics } from './metrics.js';

export async function startMetricsServer(listen: string, metrics: DaemonMetrics, logger: Logger): Promise<{ address: string; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/metrics') {
      metrics.render().then((body) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(body);
      }, (err: unknown) => {
        logger.error('metrics scrape failed', { err: errorMessage(err) });
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end('metrics failed\n');
      });
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
