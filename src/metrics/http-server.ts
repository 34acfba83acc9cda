/**
 * The Prometheus endpoint: GET /metrics on metrics_host:metrics_port
 * (127.0.0.1 by default; the figures say what a cache holds and serves, so it
 * is local unless the operator binds it elsewhere). Anything else is 404.
 * Started by the daemon only when metrics_port > 0; close() ends it.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { ConfigError, errorMessage } from '../errors.js';

export class MetricsServer {
  readonly #server: Server;
  #url: string | null = null;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async listen(registry: Registry, port: number, host: string): Promise<MetricsServer> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('kvtier: only GET /metrics is served here\n');
        return;
      }
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`kvtier: ${errorMessage(e)}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e) => reject(new ConfigError(`metrics_port ${port} on ${host} cannot be served: ${e.message}`)));
      server.listen(port, host, () => resolve());
    });
    const ms = new MetricsServer(server);
    const a = server.address() as AddressInfo;
    ms.#url = `http://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}/metrics`;
    return ms;
  }

  /** http://host:port/metrics */
  get url(): string | null {
    return this.#url;
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.closeAllConnections();
      this.#server.close(() => resolve());
    });
  }
}
