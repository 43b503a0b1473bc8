import type { AddressInfo } from "node:net";
import type { Server } from "node:http";
import { afterEach, describe, expect, it } from "vitest";
import { startHealthServer, type HealthState } from "./health.js";
import { AgentMetrics } from "./metrics.js";

const servers: Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** A health server on 127.0.0.1 and a port the kernel chose, with a readiness the test sets. */
async function start() {
  let reason: string | undefined = "the lease is not acquired yet";
  const state: HealthState = { ready: () => reason === undefined, notReadyReason: () => reason ?? "" };
  const metrics = new AgentMetrics();
  const server = await startHealthServer("127.0.0.1", 0, state, metrics);
  servers.push(server);
  const { port } = server.address() as AddressInfo;
  const get = async (path: string, method = "GET") => {
    const response = await fetch(`http://127.0.0.1:${port}${path}`, { method, signal: AbortSignal.timeout(5000) });
    return { status: response.status, type: response.headers.get("content-type"), body: await response.text() };
  };
  return { get, port, metrics, setReason: (r: string | undefined) => (reason = r) };
}

describe("the agent's health server", () => {
  it("answers /healthz with 200 while running", async () => {
    const { get } = await start();
    expect(await get("/healthz")).toEqual({ status: 200, type: "text/plain; charset=utf-8", body: "flanneld is running" });
    expect(await get("/healthz?verbose=1")).toMatchObject({ status: 200, body: "flanneld is running" });
    expect(await get("/healthz", "HEAD")).toMatchObject({ status: 200, body: "" });
  });

  it("answers /readyz with 503 and the reason until ready, 200 after, 503 again when it is not", async () => {
    const { get, setReason } = await start();
    expect(await get("/readyz")).toMatchObject({ status: 503, body: "the lease is not acquired yet" });
    setReason(undefined);
    expect(await get("/readyz")).toMatchObject({ status: 200, body: "ready" });
    setReason("etcd is unreachable: retrying");
    expect(await get("/readyz")).toMatchObject({ status: 503, body: "etcd is unreachable: retrying" });
  });

  it("serves the metrics in Prometheus text format", async () => {
    const { get, metrics } = await start();
    metrics.etcdRequests = 5;
    const reply = await get("/metrics");
    expect(reply.status).toBe(200);
    expect(reply.type).toBe("text/plain; version=0.0.4; charset=utf-8");
    expect(reply.body).toContain("# TYPE weft_agent_etcd_requests_total counter\nweft_agent_etcd_requests_total 5\n");
  });

  it("answers any other path with 404 naming the paths it serves", async () => {
    const { get } = await start();
    expect(await get("/")).toMatchObject({ status: 404, body: "not found: /healthz, /readyz or /metrics" });
    expect(await get("/healthz/x")).toMatchObject({ status: 404 });
  });

  it("says which address and port it could not listen on, and why", async () => {
    const { port } = await start();
    const state: HealthState = { ready: () => true, notReadyReason: () => "" };
    await expect(startHealthServer("127.0.0.1", port, state, new AgentMetrics())).rejects.toThrow(
      `health server: cannot listen on 127.0.0.1:${port} (EADDRINUSE): choose another --healthz-port or --healthz-ip`,
    );
    await expect(startHealthServer("192.0.2.1", port, state, new AgentMetrics())).rejects.toThrow(
      /^health server: cannot listen on 192\.0\.2\.1:\d+ \(EADDRNOTAVAIL\)/,
    );
  });
});
