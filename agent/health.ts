import { createServer, type Server } from "node:http";
import type { AgentMetrics } from "./metrics.js";

export interface HealthState {
  /** Device, lease, rules and subnet.env are in place, and etcd answers. */
  ready(): boolean;
  /** Why the agent is not ready, for the 503's body. */
  notReadyReason(): string;
}

/**
 * flanneld's health server: /healthz answers 200 while the process runs, /readyz 200 once the node's
 * network is in place (503 before, and while etcd cannot be reached), and weft's /metrics.
 */
export function startHealthServer(address: string, port: number, state: HealthState, metrics: AgentMetrics): Promise<Server> {
  const server = createServer((request, response) => {
    const path = (request.url ?? "/").split("?")[0];
    const reply = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      response.writeHead(status, { "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
      response.end(request.method === "HEAD" ? undefined : body);
    };
    if (path === "/healthz") reply(200, "flanneld is running");
    else if (path === "/readyz") reply(state.ready() ? 200 : 503, state.ready() ? "ready" : state.notReadyReason());
    else if (path === "/metrics") reply(200, metrics.format(), "text/plain; version=0.0.4; charset=utf-8");
    else reply(404, "not found: /healthz, /readyz or /metrics");
  });
  return new Promise((resolve, reject) => {
    server.once("error", (err: NodeJS.ErrnoException) => {
      reject(
        new Error(`health server: cannot listen on ${address}:${port} (${err.code ?? err.message}): choose another --healthz-port or --healthz-ip`),
      );
    });
    server.listen(port, address, () => resolve(server));
  });
}
